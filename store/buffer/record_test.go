package buffer

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
)

func fullMessage() *store.Message {
	return &store.Message{
		ID:              uuid.New(),
		Channel:         "billing.DLQ",
		Payload:         []byte(`{"amount":42}`),
		Status:          store.StatusAcquired,
		ScheduledAt:     epoch,
		Attempts:        3,
		MaxAttempts:     10,
		LeaseToken:      uuid.New(),
		LeasedUntil:     epoch.Add(30 * time.Second),
		AcquiredAt:      epoch.Add(time.Second),
		CreatedAt:       time.Date(1969, 7, 20, 20, 17, 40, 5, time.UTC),
		UpdatedAt:       epoch.Add(2 * time.Second),
		Region:          "us-east",
		DedupKey:        "invoice-7",
		OriginalChannel: "billing",
		LastError:       "timeout",
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, m := range []*store.Message{fullMessage(), {}, newMessage(1)} {
		got, err := decodeRecord(encodeRecord(nil, m))
		require.NoError(t, err)
		require.Equal(t, m, got)
	}
	// Times come back in UTC, the same instant.
	m := newMessage(0)
	m.ScheduledAt = time.Date(2031, 5, 6, 7, 8, 9, 10, time.FixedZone("x", 3600))
	got, err := decodeRecord(encodeRecord(nil, m))
	require.NoError(t, err)
	require.True(t, m.ScheduledAt.Equal(got.ScheduledAt))
}

func TestRecordRejectsGarbage(t *testing.T) {
	good := encodeRecord(nil, fullMessage())
	for name, b := range map[string][]byte{
		"empty":    nil,
		"version":  append([]byte{9}, good[1:]...),
		"short":    good[:len(good)-1],
		"trailing": append(append([]byte{}, good...), 0),
		"length":   append(append([]byte{}, good[:17]...), 0xff, 0xff, 0xff, 0x7f),
	} {
		_, err := decodeRecord(b)
		require.ErrorIs(t, err, errCorrupt, name)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(nil, fullMessage()))
	f.Add(encodeRecord(nil, &store.Message{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeRecord(b)
		if err != nil {
			return
		}
		enc := encodeRecord(nil, m)
		again, err := decodeRecord(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !bytes.Equal(enc, encodeRecord(nil, again)) {
			t.Fatalf("encode → decode does not round-trip")
		}
		require.Equal(t, m, again)
	})
}

func TestRecordTimeBounds(t *testing.T) {
	m := newMessage(0)
	m.ScheduledAt = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	got, err := decodeRecord(encodeRecord(nil, m))
	require.NoError(t, err)
	require.Equal(t, m, got)

	b := encodeRecord(nil, &store.Message{})
	// Replace scheduled_at (after version, id, three empty strings) with a
	// time far beyond year 9999.
	i := 1 + 16 + 3
	bad := append(append(append([]byte{}, b[:i]...), 1, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0), b[i+1:]...)
	_, err = decodeRecord(bad)
	require.ErrorIs(t, err, errCorrupt)
}
