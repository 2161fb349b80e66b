package api_test

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/smq/smq/store"
)

// fakeStore is an in-memory store.Store for tests that check what the API
// does before and around the database: validation, auth, routing, error
// mapping. The lifecycle itself is tested on PostgreSQL.
type fakeStore struct {
	mu       sync.Mutex // guards everything below
	msgs     map[uuid.UUID]*store.Message
	dedup    map[string]uuid.UUID
	writes   int   // calls that may change state
	inserts  int   // MessageInsertMany calls
	err      error // returned by every call when set
	lastPoll *store.MessagePollParams
	lastNack *store.MessageNackParams
}

var _ store.Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{msgs: map[uuid.UUID]*store.Message{}, dedup: map[string]uuid.UUID{}}
}

func (f *fakeStore) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeStore) insertCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inserts
}

func (f *fakeStore) writeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

func (f *fakeStore) MessageInsertMany(_ context.Context, p *store.MessageInsertManyParams) (*store.MessageInsertManyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	f.inserts++
	if f.err != nil {
		return nil, f.err
	}
	res := &store.MessageInsertManyResult{Existing: map[int]uuid.UUID{}}
	for i, m := range p.Messages {
		if m.DedupKey != "" {
			k := m.Channel + "\x00" + m.DedupKey
			if id, ok := f.dedup[k]; ok {
				res.Existing[i] = id
				continue
			}
			f.dedup[k] = m.ID
		}
		c := *m
		f.msgs[m.ID] = &c
		res.Inserted++
	}
	return res, nil
}

func (f *fakeStore) MessageGet(_ context.Context, id uuid.UUID) (*store.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	m, ok := f.msgs[id]
	if !ok {
		return nil, store.ErrNotFound
	}
	c := *m
	return &c, nil
}

func (f *fakeStore) MessageDelete(_ context.Context, id uuid.UUID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.err != nil {
		return f.err
	}
	if _, ok := f.msgs[id]; !ok {
		return store.ErrNotFound
	}
	delete(f.msgs, id)
	return nil
}

func (f *fakeStore) MessageUpdate(_ context.Context, p *store.MessageUpdateParams) (*store.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.err != nil {
		return nil, f.err
	}
	m, ok := f.msgs[p.ID]
	if !ok {
		return nil, store.ErrNotFound
	}
	if m.Status == store.StatusAcquired {
		return nil, store.ErrConflict
	}
	if p.ScheduledAt != nil {
		m.ScheduledAt = *p.ScheduledAt
	}
	if p.Payload != nil {
		m.Payload = p.Payload
	}
	c := *m
	return &c, nil
}

func (f *fakeStore) MessagePoll(_ context.Context, p *store.MessagePollParams) ([]*store.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	c := *p
	f.lastPoll = &c
	if f.err != nil {
		return nil, f.err
	}
	return nil, nil
}

func (f *fakeStore) MessageAck(_ context.Context, p *store.MessageAckParams) (store.Counts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.err != nil {
		return nil, f.err
	}
	return store.Counts{}, nil
}

func (f *fakeStore) MessageNack(_ context.Context, p *store.MessageNackParams) (store.Counts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	c := *p
	f.lastNack = &c
	if f.err != nil {
		return nil, f.err
	}
	return store.Counts{}, nil
}

func (f *fakeStore) MessageExtend(_ context.Context, p *store.MessageExtendParams) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.err != nil {
		return 0, f.err
	}
	return 0, nil
}

func (f *fakeStore) MessagePromote(context.Context, *store.MessagePromoteParams) (*store.Promoted, error) {
	return &store.Promoted{}, nil
}

func (f *fakeStore) MessageNextDue(context.Context, string) (time.Time, error) {
	return time.Time{}, nil
}

func (f *fakeStore) MessageRegions(context.Context) ([]string, error) {
	return nil, nil
}

func (f *fakeStore) MessageRecover(context.Context, *store.MessageRecoverParams) (*store.Recovered, error) {
	return &store.Recovered{}, nil
}

func (f *fakeStore) ChannelList(context.Context, int, int) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return []string{}, nil
}

func (f *fakeStore) ChannelStats(_ context.Context, ch string) (*store.ChannelStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return &store.ChannelStats{Channel: ch, ByStatus: map[store.Status]int64{}}, nil
}

func (f *fakeStore) FlushMark(context.Context, string) (uint64, error) { return 0, nil }
func (f *fakeStore) NodeHeartbeat(context.Context, *store.Node) error  { return nil }
func (f *fakeStore) NodeList(context.Context, int, int) ([]*store.Node, error) {
	return []*store.Node{{ID: "n1", Region: "r1", Version: "v", Status: store.NodeActive, LastHeartbeat: time.Now(), StartedAt: time.Now()}}, nil
}
func (f *fakeStore) NodeMarkStale(context.Context, time.Duration) ([]*store.Node, error) {
	return nil, nil
}
func (f *fakeStore) NodeDelete(context.Context, string) error { return nil }
func (f *fakeStore) Ping(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// fakeBuffer is an in-memory store.Buffer that counts appends.
type fakeBuffer struct {
	mu      sync.Mutex // guards everything below
	msgs    map[uuid.UUID]*store.Message
	appends int
	err     error
}

var _ store.Buffer = (*fakeBuffer)(nil)

func newFakeBuffer() *fakeBuffer { return &fakeBuffer{msgs: map[uuid.UUID]*store.Message{}} }

func (b *fakeBuffer) Append(_ context.Context, msgs []*store.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	b.appends++
	for _, m := range msgs {
		c := *m
		b.msgs[m.ID] = &c
	}
	return nil
}

func (b *fakeBuffer) Get(id uuid.UUID) (*store.Message, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.msgs[id]
	if !ok {
		return nil, false
	}
	c := *m
	return &c, true
}

func (b *fakeBuffer) Delete(_ context.Context, id uuid.UUID) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.msgs[id]
	delete(b.msgs, id)
	return ok, nil
}

func (b *fakeBuffer) Update(_ context.Context, id uuid.UUID, fn func(*store.Message)) (*store.Message, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.msgs[id]
	if !ok {
		return nil, false, nil
	}
	fn(m)
	c := *m
	return &c, true, nil
}

func (b *fakeBuffer) Next(int) *store.Batch                      { return nil }
func (b *fakeBuffer) Commit(context.Context, *store.Batch) error { return nil }
func (b *fakeBuffer) Release(*store.Batch)                       {}
func (b *fakeBuffer) Discard(context.Context, uint64) error      { return nil }
func (b *fakeBuffer) Appended() <-chan struct{}                  { return nil }
func (b *fakeBuffer) Due() <-chan struct{}                       { return nil }
func (b *fakeBuffer) Stats() store.BufferStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return store.BufferStats{Kind: "memory", Depth: len(b.msgs)}
}
func (b *fakeBuffer) Close() error { return nil }

func (b *fakeBuffer) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err = err
}

func (b *fakeBuffer) appendCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.appends
}
