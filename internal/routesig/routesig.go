// Package routesig authenticates the headers that the controller's route rewrite adds for the
// resolver. Any client that reaches the resolver can send X-Elasti-Service; only a value signed
// with the cluster's route key, which the controller writes into the rewritten route and the
// resolver checks, says that elasti's own rewrite put it there. The signature binds the
// ElastiService, the port and the subset together, so a copy read off one route cannot name
// another target, port or subset.
//
// The key is one random value in a Secret in elasti's namespace. The controller creates it on
// first start; the resolver reads that one Secret by name. Each ElastiService signs with its
// own key derived from it, so a signature is worthless for any other ElastiService.
package routesig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"sync"
	"sync/atomic"
)

// DefaultSecretName is the Secret, in elasti's namespace, that holds the route key.
const DefaultSecretName = "elasti-route-key"

// SecretKey is the data key of the route key in its Secret.
const SecretKey = "key"

// KeySize is the size of a generated key, and the least a Signer accepts.
const KeySize = 32

// sigLen is the number of HMAC bytes kept: 128 bits cannot be guessed online.
const sigLen = 16

// ErrShortKey is returned by New for a key shorter than KeySize.
var ErrShortKey = errors.New("route key is shorter than 32 bytes")

// Signer signs and verifies route headers with one route key. It is safe for concurrent use.
type Signer struct {
	key   []byte
	pool  sync.Pool // hash.Hash keyed with key, for deriving per-ElastiService keys
	cache sync.Map  // target -> *targetKey
}

type targetKey struct{ pool sync.Pool }

// New returns a Signer for key.
func New(key []byte) (*Signer, error) {
	if len(key) < KeySize {
		return nil, ErrShortKey
	}
	s := &Signer{key: append([]byte(nil), key...)}
	s.pool.New = func() any { return hmac.New(sha256.New, s.key) }
	return s, nil
}

// Sign returns the signature of the route headers for target ("namespace/name" of the
// ElastiService), port (the decimal port the route named, or "") and subset (or "").
func (s *Signer) Sign(target, port, subset string) string {
	var sum [sha256.Size]byte
	s.sum(&sum, target, port, subset)
	return base64.RawURLEncoding.EncodeToString(sum[:sigLen])
}

// Verify reports whether sig is the signature of target, port and subset.
func (s *Signer) Verify(target, port, subset, sig string) bool {
	var got [sigLen]byte
	if base64.RawURLEncoding.DecodedLen(len(sig)) != sigLen {
		return false
	}
	if n, err := base64.RawURLEncoding.Decode(got[:], []byte(sig)); err != nil || n != sigLen {
		return false
	}
	var sum [sha256.Size]byte
	s.sum(&sum, target, port, subset)
	return hmac.Equal(got[:], sum[:sigLen])
}

func (s *Signer) sum(out *[sha256.Size]byte, target, port, subset string) {
	tk := s.targetKey(target)
	h := tk.pool.Get().(hash.Hash)
	h.Reset()
	// The fields are separated by a byte no Kubernetes name, port or subset contains.
	_, _ = h.Write([]byte(port))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(subset))
	h.Sum(out[:0])
	tk.pool.Put(h)
}

// targetKey returns the hash pool keyed with target's own key, HMAC(route key, target).
// The cache grows with the ElastiServices seen; Forget drops one.
func (s *Signer) targetKey(target string) *targetKey {
	if v, ok := s.cache.Load(target); ok {
		return v.(*targetKey)
	}
	h := s.pool.Get().(hash.Hash)
	h.Reset()
	_, _ = h.Write([]byte("elasti route key v1\x00"))
	_, _ = h.Write([]byte(target))
	derived := h.Sum(nil)
	s.pool.Put(h)
	tk := &targetKey{}
	tk.pool.New = func() any { return hmac.New(sha256.New, derived) }
	v, _ := s.cache.LoadOrStore(target, tk)
	return v.(*targetKey)
}

// Forget drops the cached key of target, whose ElastiService is gone.
func (s *Signer) Forget(target string) { s.cache.Delete(target) }

// Key holds the current Signer, which changes when the route key's Secret does. The zero Key
// has none and verifies nothing. It is safe for concurrent use.
type Key struct{ s atomic.Pointer[Signer] }

// Set replaces the Signer with one for key; an empty key clears it.
func (k *Key) Set(key []byte) error {
	if len(key) == 0 {
		k.s.Store(nil)
		return nil
	}
	s, err := New(key)
	if err != nil {
		k.s.Store(nil)
		return err
	}
	k.s.Store(s)
	return nil
}

// Signer returns the current Signer, or nil.
func (k *Key) Signer() *Signer { return k.s.Load() }

// Verify is Signer.Verify with the current Signer; false when there is none.
func (k *Key) Verify(target, port, subset, sig string) bool {
	s := k.s.Load()
	return s != nil && s.Verify(target, port, subset, sig)
}

// Forget is Signer.Forget with the current Signer.
func (k *Key) Forget(target string) {
	if s := k.s.Load(); s != nil {
		s.Forget(target)
	}
}
