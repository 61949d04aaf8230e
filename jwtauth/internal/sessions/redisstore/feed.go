package redisstore

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// feedBatch bounds the revocations read at once.
const feedBatch = 512

// Follow implements sessions.Feed. It reads the issuer's revocation stream
// with XREAD on a connection of its own: first, without blocking, the
// whole retained window (revocations made before since are skipped), and
// only then a first Heard, so that a caller trusting Heard never misses a
// retained revocation; then XREAD BLOCK, at most interval per read, so
// that a quiet stream still gives a Heard every interval. Before each read it checks the dataset's epoch: when Redis has
// lost its data (the epoch key is gone or was replaced) it calls h.Reset
// and reads the new stream from its start. While Redis does not answer it
// retries, without calling Heard.
func (s *Store) Follow(ctx context.Context, since time.Time, interval time.Duration, h sessions.FeedHandler) error {
	interval = max(interval, time.Millisecond)
	o := s.opts
	o.PoolSize, o.MinIdleConns, o.MaxIdleConns = 1, 0, 1
	c := redis.NewUniversalClient(&o)
	defer c.Close()
	// Closing the client ends a blocked read at once when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()

	s.mu.Lock()
	f := follower{s: s, c: c, h: h, since: since, interval: interval, last: "0-0", catchUp: true, epoch: s.epoch}
	s.mu.Unlock()
	retry := time.NewTimer(0)
	<-retry.C
	for ctx.Err() == nil {
		if err := f.round(ctx); err == nil || ctx.Err() != nil {
			continue
		}
		// Redis did not answer: the caller's staleness clock runs on.
		retry.Reset(min(interval, 100*time.Millisecond))
		select {
		case <-ctx.Done():
		case <-retry.C:
		}
	}
	return ctx.Err()
}

type follower struct {
	s        *Store
	c        redis.UniversalClient
	h        sessions.FeedHandler
	since    time.Time
	interval time.Duration
	last     string // the last stream id read
	// catchUp is set while the stream may hold more than was read (at
	// the start, after a Reset, after a full batch): reads do not block,
	// so that Heard comes only once everything retained was delivered.
	catchUp bool
	epoch   string
}

// round checks the epoch, then reads what the stream holds after f.last,
// waiting up to f.interval for something to arrive.
func (f *follower) round(ctx context.Context) error {
	ectx, cancel := context.WithTimeout(ctx, f.s.timeout)
	e, err := f.s.readEpoch(ectx, f.c)
	cancel()
	if err != nil {
		return err
	}
	if f.epoch != "" && e != f.epoch {
		f.last, f.catchUp = "0-0", true
		f.h.Reset(time.Now())
	}
	f.epoch = e
	f.s.mu.Lock()
	f.s.epoch = e
	f.s.mu.Unlock()

	block, wait := f.interval, f.interval+f.s.timeout
	if f.catchUp {
		block, wait = -1, f.s.timeout
	}
	rctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	res, err := f.c.XRead(rctx, &redis.XReadArgs{
		Streams: []string{f.s.base + ":rev", f.last},
		Count:   feedBatch,
		Block:   block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		f.catchUp = false
		f.h.Heard(time.Now())
		return nil
	}
	if err != nil {
		return unavailable(err)
	}
	read := 0
	for _, st := range res {
		read += len(st.Messages)
		for _, m := range st.Messages {
			f.last = m.ID
			r, ok := parseEntry(m.Values)
			if ok && !r.At.Before(f.since) {
				f.h.Revoked(r)
			}
		}
	}
	f.catchUp = read >= feedBatch
	if !f.catchUp {
		f.h.Heard(time.Now())
	}
	return nil
}

// parseEntry reads one stream entry; entries it cannot read are skipped.
func parseEntry(v map[string]any) (sessions.Revocation, bool) {
	sid, _ := v["sid"].(string)
	login, _ := v["login"].(string)
	reason, _ := v["reason"].(string)
	at, ok := parseTime(v["at"])
	if sid == "" || !ok {
		return sessions.Revocation{}, false
	}
	return sessions.Revocation{SID: sid, Login: login, Reason: sessions.Reason(reason), At: at}, true
}
