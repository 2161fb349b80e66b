package api

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2/adapters/humachi"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/smq/smq/store"
)

// bodyReaderOf returns the bodyReader of the operation at path (POST).
func bodyReaderOf(t testing.TB, path string) *bodyReader {
	t.Helper()
	a := humachi.New(chi.NewMux(), humaConfig())
	Register(a, Deps{Store: nopStore{}, Registry: prometheus.NewRegistry()})
	br, ok := a.OpenAPI().Paths[path].Post.Metadata[bodyReaderKey].(*bodyReader)
	require.True(t, ok, "no bodyReader for %s", path)
	return br
}

var messageSeeds = []string{
	`{"channel":"c","payload":1}`,
	`{"channel":"orders","payload":{"n":1},"scheduled_at":"2030-01-01T00:00:00.123Z"}`,
	` { "channel" : "a.B_c-9" , "payload" : [ 1 , -2.5e-3 , "x\u00e9\n" , true , false , null , { } , [ ] ] } `,
	`{"payload":{"a":{"b":[[[{"c":"\"\\\/\b\f\n\r\t"}]]]}},"channel":"c","delay":"90s","max_attempts":1000,"dedup_key":"ké"}`,
	`{"channel":"c","payload":null,"scheduled_at":null,"delay":null,"max_attempts":null,"dedup_key":null}`,
	`{"channel":"c","payload":1,"scheduled_at":1.9e9,"delay":-0}`,
	`{"channel":"c","payload":1,"scheduled_at":1.5}`,
	`{"channel":"c","payload":1,"max_attempts":0}`,
	`{"channel":"c","payload":1,"max_attempts":1e2}`,
	`{"channel":"c","payload":1e400}`,
	`{"channel":"c","payload":1e-400}`,
	`{"channel":"c","payload":1,"Channel":"d"}`,
	`{"Channel":"c","payload":1}`,
	`{"ch\u0061nnel":"c","payload":1}`,
	`{"channel":"c","channel":"c","payload":1}`,
	`{"channel":"c","payload":1,"bogus":1}`,
	`{"channel":"","payload":1}`,
	`{"channel":"` + strings.Repeat("c", 129) + `","payload":1}`,
	`{"channel":"c","payload":1,"dedup_key":"` + strings.Repeat("é", 257) + `"}`,
	"{\"channel\":\"c\",\"payload\":\"\xff\",\"dedup_key\":\"\xff\"}",
	`{"channel":"c","payload":"\ud800"}`,
	`{"channel":"c","payload":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`,
	`{"channel":"c","payload":1}x`,
	`{"channel":"c","payload":[1,]}`,
	`{"channel":"c","payload":01}`,
	`{"channel":"c","payload":1,}`,
	`{}`, `[]`, `null`, ``, ` `,
}

// FuzzDecodeMessage holds the fast path of a single create's body to the
// way Huma reads it: whatever decodeMessage takes, Huma takes too, and
// decodes to the same message.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range messageSeeds {
		f.Add([]byte(s))
	}
	br := bodyReaderOf(f, "/v1/message")
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast MessageIn
		if !decodeMessage(bytes.Clone(body), &fast) {
			return
		}
		var slow MessageIn
		require.Empty(t, br.huma("application/json", body, &slow), "%q", body)
		require.Equal(t, slow, fast, "%q", body)
	})
}

// FuzzDecodeBatch does the same for the body of a batch create.
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range messageSeeds {
		f.Add([]byte(`{"messages":[` + s + `]}`))
		f.Add([]byte(`{"messages":[` + s + `,{"channel":"c","payload":2}]}`))
	}
	f.Add([]byte(`{"messages":null}`))
	f.Add([]byte(`{"messages":[]}`))
	f.Add([]byte(`{"Messages":[{"channel":"c","payload":1}]}`))
	f.Add([]byte(`{"messages":[{"channel":"c","payload":1}],"messages":null}`))
	br := bodyReaderOf(f, "/v1/messages")
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast createMessagesBody
		if !decodeBatch(bytes.Clone(body), &fast) {
			return
		}
		var slow createMessagesBody
		require.Empty(t, br.huma("application/json", body, &slow), "%q", body)
		require.Equal(t, slow, fast, "%q", body)
	})
}

var leaseSeeds = []string{
	`{"message_ids":["0192f5b4-7d2a-7c4e-9a1b-2f3c4d5e6f70","0192f5b4-7d2a-7c4e-9a1b-2f3c4d5e6f71"]}`,
	`{"receipts":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]}`,
	` { "message_ids" : [ "a" , "b" ] , "receipts" : null } `,
	`{"message_ids":[],"receipts":[]}`,
	`{}`, `{"message_ids":null}`, `{"message_ids":"x"}`, `{"message_ids":[1]}`, `{"message_ids":[null]}`,
	`{"message_ids":["a"],"message_ids":["b"]}`, `{"Message_IDs":["a"]}`, `{"message_ids":["\u0061"]}`, `{"message_ids":["é"]}`,
	"{\"message_ids\":[\"\xff\"]}", `{"bogus":1}`, `{"message_ids":["a",]}`, `null`, `[]`, ``,
}

// FuzzDecodeLease holds the fast path of an ack's body to the way Huma
// reads it.
func FuzzDecodeLease(f *testing.F) {
	for _, s := range leaseSeeds {
		f.Add([]byte(s))
	}
	br := bodyReaderOf(f, "/v1/messages/ack")
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast leaseBody
		if !decodeLease(body, &fast) {
			return
		}
		var slow leaseBody
		require.Empty(t, br.huma("application/json", body, &slow), "%q", body)
		require.Equal(t, slow, fast, "%q", body)
	})
}

// FuzzDecodeNack holds the fast path of a nack's body to the way Huma
// reads it.
func FuzzDecodeNack(f *testing.F) {
	for _, s := range leaseSeeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		`{"message_ids":["a"],"delay":"5s","reason":"boom"}`, `{"receipts":["a"],"delay":30,"reason":"é"}`,
		`{"message_ids":["a"],"delay":null,"reason":null}`, `{"message_ids":["a"],"delay":1.5}`, `{"message_ids":["a"],"delay":true}`,
		`{"message_ids":["a"],"delay":1e400}`, `{"message_ids":["a"],"reason":"a\nb"}`, `{"message_ids":["a"],"reason":1}`,
		`{"message_ids":["a"],"reason":"` + strings.Repeat("r", 4097) + `"}`, `{"reason":"a","Reason":"b"}`,
	} {
		f.Add([]byte(s))
	}
	br := bodyReaderOf(f, "/v1/messages/nack")
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast nackBody
		if !decodeNack(body, &fast) {
			return
		}
		var slow nackBody
		require.Empty(t, br.huma("application/json", body, &slow), "%q", body)
		require.Equal(t, slow, fast, "%q", body)
	})
}

// TestDecodeTakes checks that the fast path takes the bodies clients
// usually send, so that they do not silently go the slow way.
func TestDecodeTakes(t *testing.T) {
	for _, body := range []string{
		`{"channel":"orders","payload":{"n":1}}`,
		`{"channel":"orders","payload":{"n":1},"scheduled_at":"2030-01-01T00:00:00.123456Z"}`,
		`{"channel":"orders","payload":{"n":1},"scheduled_at":1900000000}`,
		`{"channel":"orders","payload":"text","delay":"90s","max_attempts":3,"dedup_key":"order-42"}`,
		`{"channel":"orders","payload":[1,2.5,-3e-2,true,false,null,"\"quoted\" \u00e9"],"delay":30}`,
		"{\n  \"channel\": \"orders\",\n  \"payload\": {\"nested\": {\"deep\": [{}, []]}}\n}\n",
	} {
		var m MessageIn
		require.True(t, decodeMessage([]byte(body), &m), "%s", body)
		var batch createMessagesBody
		require.True(t, decodeBatch([]byte(`{"messages":[`+body+`,`+body+`]}`), &batch), "%s", body)
		require.Len(t, batch.Messages, 2)
	}
	for _, body := range []string{
		`{"message_ids":["0192f5b4-7d2a-7c4e-9a1b-2f3c4d5e6f70","0192f5b4-7d2a-7c4e-9a1b-2f3c4d5e6f71"]}`,
		`{"receipts":["AZL1tH0qfE6aGy88TV5vcAGS9bR9KnxOmhsvPE1ebw"]}`,
	} {
		var lease leaseBody
		require.True(t, decodeLease([]byte(body), &lease), "%s", body)
		var nack nackBody
		require.True(t, decodeNack([]byte(body[:len(body)-1]+`,"delay":"30s","reason":"downstream timed out"}`), &nack), "%s", body)
	}
}

// FuzzValidChannel holds validChannel to store.ValidChannel, and validName
// for request ids to the pattern it replaced.
func FuzzValidChannel(f *testing.F) {
	for _, s := range []string{"", "c", "a.B_c-9", "a b", "é", strings.Repeat("c", 64), strings.Repeat("c", 65), strings.Repeat("c", 128), strings.Repeat("c", 129), "c\n", "c\x00"} {
		f.Add(s)
	}
	requestID := regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	f.Fuzz(func(t *testing.T, name string) {
		require.Equal(t, store.ValidChannel(name), validChannel(name), "%q", name)
		require.Equal(t, store.ValidChannel(name), validChannel([]byte(name)), "%q", name)
		require.Equal(t, requestID.MatchString(name), validName(name, 64), "%q", name)
	})
}
