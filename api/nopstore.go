package api

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/smq/smq/store"
)

// nopStore stands in for the database where only the operations'
// registration matters (OpenAPI): every call returns store.ErrUnavailable.
type nopStore struct{}

var _ store.Store = nopStore{}

func (nopStore) MessageInsertMany(context.Context, *store.MessageInsertManyParams) (*store.MessageInsertManyResult, error) {
	return nil, store.ErrUnavailable
}
func (nopStore) MessageGet(context.Context, uuid.UUID) (*store.Message, error) {
	return nil, store.ErrUnavailable
}
func (nopStore) MessageDelete(context.Context, uuid.UUID) error { return store.ErrUnavailable }
func (nopStore) MessageUpdate(context.Context, *store.MessageUpdateParams) (*store.Message, error) {
	return nil, store.ErrUnavailable
}
func (nopStore) MessagePoll(context.Context, *store.MessagePollParams) ([]*store.Message, error) {
	return nil, store.ErrUnavailable
}
func (nopStore) MessageAck(context.Context, *store.MessageAckParams) (store.Counts, error) {
	return nil, store.ErrUnavailable
}
func (nopStore) MessageNack(context.Context, *store.MessageNackParams) (store.Counts, error) {
	return nil, store.ErrUnavailable
}
func (nopStore) MessageExtend(context.Context, *store.MessageExtendParams) (int, error) {
	return 0, store.ErrUnavailable
}
func (nopStore) MessagePromote(context.Context, *store.MessagePromoteParams) (*store.Promoted, error) {
	return nil, store.ErrUnavailable
}
func (nopStore) MessageNextDue(context.Context, string) (time.Time, error) {
	return time.Time{}, store.ErrUnavailable
}
func (nopStore) MessageRecover(context.Context, *store.MessageRecoverParams) (*store.Recovered, error) {
	return nil, store.ErrUnavailable
}
func (nopStore) MessageRegions(context.Context) ([]string, error) {
	return nil, store.ErrUnavailable
}
func (nopStore) ChannelList(context.Context, int, int) ([]string, error) {
	return nil, store.ErrUnavailable
}
func (nopStore) ChannelStats(context.Context, string) (*store.ChannelStats, error) {
	return nil, store.ErrUnavailable
}
func (nopStore) FlushMark(context.Context, string) (uint64, error) { return 0, store.ErrUnavailable }
func (nopStore) NodeHeartbeat(context.Context, *store.Node) error  { return store.ErrUnavailable }
func (nopStore) NodeList(context.Context, int, int) ([]*store.Node, error) {
	return nil, store.ErrUnavailable
}
func (nopStore) NodeMarkStale(context.Context, time.Duration) ([]*store.Node, error) {
	return nil, store.ErrUnavailable
}
func (nopStore) NodeDelete(context.Context, string) error { return store.ErrUnavailable }
func (nopStore) Ping(context.Context) error               { return store.ErrUnavailable }
