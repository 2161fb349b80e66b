package buffer

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
)

func TestEntryRoundTrip(t *testing.T) {
	msgs := []*store.Message{fullMessage(), {}, newMessage(1)}
	for _, tc := range []struct {
		first uint64
		h     entryHeader
	}{
		{100, entryHeader{kind: entryWhole, count: 3, begin: 100, end: 102}},
		{100, entryHeader{kind: entryPart, count: 3, begin: 90, end: 150}},
		{100, entryHeader{kind: entryPart, count: 3, begin: 100, end: 102}},
	} {
		v := entryValue(tc.first, tc.h.kind, tc.h.begin, tc.h.end, msgs...)
		h, raw, err := decodeEntry(tc.first, v)
		require.NoError(t, err)
		require.Equal(t, tc.h, h)
		require.Len(t, raw, len(msgs))
		for i, b := range raw {
			m, err := decodeRecord(b)
			require.NoError(t, err)
			require.Equal(t, msgs[i], m)
		}
	}
}

func TestEntryRejectsGarbage(t *testing.T) {
	good := entryValue(7, entryPart, 5, 20, newMessage(0), newMessage(1))
	for name, v := range map[string][]byte{
		"empty":     nil,
		"version":   append([]byte{9}, good[1:]...),
		"kind":      append([]byte{entryVersion, 7}, good[2:]...),
		"short":     good[:len(good)-1],
		"trailing":  append(append([]byte{}, good...), 0),
		"no count":  {entryVersion, entryWhole},
		"zero":      {entryVersion, entryWhole, 0},
		"huge":      {entryVersion, entryWhole, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0},
		"before 0":  {entryVersion, entryPart, 8, 0, 1, 0, 0, 0, 0},
		"end short": {entryVersion, entryPart, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0},
	} {
		_, _, err := decodeEntry(7, v)
		require.ErrorIs(t, err, errCorrupt, name)
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(uint64(7), entryValue(7, entryWhole, 7, 8, fullMessage(), newMessage(1)))
	f.Add(uint64(1<<62), entryValue(1<<62, entryPart, 1<<61, 1<<63, &store.Message{}))
	f.Fuzz(func(t *testing.T, first uint64, v []byte) {
		h, raw, err := decodeEntry(first, v)
		if err != nil {
			return
		}
		if h.count != len(raw) || h.count < 1 || h.begin > first || h.end < h.last(first) || h.last(first) < first {
			t.Fatalf("header %+v of %d records does not describe entry %d", h, len(raw), first)
		}
	})
}
