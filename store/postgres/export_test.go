package postgres

import (
	"github.com/jackc/pgx/v5"

	"github.com/smq/smq/store"
)

// KeptPlans is keptPlans: the settings under which leases and statements
// by receipt keep one plan.
const KeptPlans = keptPlans

// MessageCols is messageCols, for tests that select messages themselves.
const MessageCols = messageCols

// CollectMessages is collectMessages; raw says whether the rows' form let
// it read them by rawMessages, which is read before it reads them.
func CollectMessages(rows pgx.Rows) (msgs []*store.Message, raw bool, err error) {
	raw = rawFields(rows.FieldDescriptions())
	msgs, err = collectMessages(rows, nil)
	return msgs, raw, err
}

// ScanMessages is scanMessages: rows of messageCols read with pgx's Scan.
var ScanMessages = scanMessages

// SetDedupRaced sets dedupRaced for the test's duration.
func SetDedupRaced(t interface{ Cleanup(func()) }, fn func()) {
	dedupRaced = fn
	t.Cleanup(func() { dedupRaced = nil })
}
