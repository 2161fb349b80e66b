package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// Scope is a permission an API key carries.
type Scope string

// The scopes. Admin may call every operation.
const (
	// ScopeProduce creates, reads, reschedules and deletes messages.
	ScopeProduce Scope = "produce"
	// ScopeConsume lists channels, polls, acks, nacks and extends leases.
	ScopeConsume Scope = "consume"
	// ScopeAdmin reads health and metrics, and may call everything else.
	ScopeAdmin Scope = "admin"
)

// AllScopes lists every scope.
var AllScopes = []Scope{ScopeProduce, ScopeConsume, ScopeAdmin}

// Key is one accepted API key.
type Key struct {
	// Name identifies the key in access logs; the secret is never logged.
	Name string
	// Secret is what clients send in the api-key header.
	Secret string
	// Scopes are what the key may do.
	Scopes []Scope
}

// ParseKeys parses SMQ_API_KEYS: comma-separated keys, each
// `[name=]secret[:scope+scope…]`. A key without scopes has all of them; a
// key without a name is named "key<n>" after its position.
//
//	SMQ_API_KEYS="ingest=s3cret1:produce,workers=s3cret2:consume,ops=s3cret3:admin"
func ParseKeys(s string) ([]Key, error) {
	var keys []Key
	for i, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		k := Key{Name: fmt.Sprintf("key%d", i+1)}
		if name, rest, ok := strings.Cut(entry, "="); ok {
			k.Name, entry = name, rest
		}
		secret, scopes, hasScopes := strings.Cut(entry, ":")
		k.Secret = secret
		if k.Secret == "" {
			return nil, fmt.Errorf("key %s: empty secret", k.Name)
		}
		if !hasScopes {
			k.Scopes = AllScopes
		}
		for _, sc := range strings.Split(scopes, "+") {
			if !hasScopes {
				break
			}
			if !slices.Contains(AllScopes, Scope(sc)) {
				return nil, fmt.Errorf("key %s: unknown scope %q (want produce, consume or admin)", k.Name, sc)
			}
			k.Scopes = append(k.Scopes, Scope(sc))
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// securityScheme is the OpenAPI name of the api-key scheme.
const securityScheme = "apiKey"

// needs returns the OpenAPI security requirement of an operation that any
// of scopes allows (admin always does).
func needs(scopes ...Scope) []map[string][]string {
	var req []map[string][]string
	for _, sc := range append(scopes, ScopeAdmin) {
		if slices.ContainsFunc(req, func(r map[string][]string) bool { return r[securityScheme][0] == string(sc) }) {
			continue
		}
		req = append(req, map[string][]string{securityScheme: {string(sc)}})
	}
	return req
}

// keyring checks secrets against the configured keys in constant time.
type keyring struct {
	hashes [][sha256.Size]byte
	keys   []Key
}

func newKeyring(keys []Key) *keyring {
	r := &keyring{keys: keys}
	for _, k := range keys {
		r.hashes = append(r.hashes, sha256.Sum256([]byte(k.Secret)))
	}
	return r
}

func (r *keyring) enabled() bool { return len(r.keys) > 0 }

// match returns the key whose secret is secret, or nil. Comparing hashes
// keeps the time independent of the secret's length, and every key is
// compared so the time does not tell which one matched.
func (r *keyring) match(secret string) *Key {
	h := sha256.Sum256([]byte(secret))
	found := -1
	for i := range r.hashes {
		if subtle.ConstantTimeCompare(h[:], r.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil
	}
	return &r.keys[found]
}

// allows reports whether k satisfies one of the security requirements.
func (k *Key) allows(reqs []map[string][]string) bool {
	if slices.Contains(k.Scopes, ScopeAdmin) {
		return true
	}
	for _, req := range reqs {
		ok := true
		for _, scopes := range req {
			for _, sc := range scopes {
				ok = ok && slices.Contains(k.Scopes, Scope(sc))
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// authError is why a request is refused, or nil.
func (s *server) authError(secret string, reqs []map[string][]string, info *requestInfo) huma.StatusError {
	if secret == "" {
		return huma.Error401Unauthorized("missing API key: send it in the api-key header")
	}
	k := s.keys.match(secret)
	if k == nil {
		return huma.Error401Unauthorized("invalid API key")
	}
	if info != nil {
		info.key = k.Name
	}
	if !k.allows(reqs) {
		var want []string
		for _, req := range reqs {
			for _, scopes := range req {
				want = append(want, scopes...)
			}
		}
		return huma.Error403Forbidden(fmt.Sprintf("API key %q lacks the scope this operation needs (one of: %s)",
			k.Name, strings.Join(want, ", ")))
	}
	return nil
}

// authenticate is the Huma middleware that enforces each operation's
// security requirement. Operations without one are public.
func (s *server) authenticate(ctx huma.Context, next func(huma.Context)) {
	reqs := ctx.Operation().Security
	if !s.keys.enabled() || len(reqs) == 0 {
		next(ctx)
		return
	}
	// The canonical name: a header's name is canonicalized for every
	// lookup, which allocates when it is not canonical already.
	if err := s.authError(ctx.Header("Api-Key"), reqs, infoFrom(ctx.Context())); err != nil {
		ctx.SetHeader("Content-Type", "application/problem+json")
		writeHumaErr(ctx, err)
		return
	}
	next(ctx)
}

// requireScope guards a plain handler (such as /metrics) with scope. It
// also takes the key as a bearer token, which is what Prometheus sends.
func (s *server) requireScope(scope Scope, h http.Handler) http.Handler {
	reqs := needs(scope)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.keys.enabled() {
			h.ServeHTTP(w, r)
			return
		}
		secret := r.Header.Get("Api-Key")
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && secret == "" {
			secret = bearer
		}
		if err := s.authError(secret, reqs, infoFrom(r.Context())); err != nil {
			writeProblem(w, err.GetStatus(), err.Error())
			return
		}
		h.ServeHTTP(w, r)
	})
}
