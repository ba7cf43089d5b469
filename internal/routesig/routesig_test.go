package routesig

import (
	"bytes"
	"testing"
)

func signer(t testing.TB, b byte) *Signer {
	t.Helper()
	s, err := New(bytes.Repeat([]byte{b}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignVerify(t *testing.T) {
	s := signer(t, 1)
	sig := s.Sign("shop/app", "8080", "v2")
	if !s.Verify("shop/app", "8080", "v2", sig) {
		t.Fatal("a signature does not verify")
	}
	if again := s.Sign("shop/app", "8080", "v2"); again != sig {
		t.Errorf("Sign is not deterministic: %q then %q", sig, again)
	}
	other := signer(t, 2)
	for name, ok := range map[string]bool{
		"other target":          s.Verify("bank/app", "8080", "v2", sig),
		"other port":            s.Verify("shop/app", "9090", "v2", sig),
		"no port":               s.Verify("shop/app", "", "v2", sig),
		"other subset":          s.Verify("shop/app", "8080", "admin", sig),
		"no subset":             s.Verify("shop/app", "8080", "", sig),
		"fields shifted":        s.Verify("shop/app", "8080v2", "", sig),
		"other key":             other.Verify("shop/app", "8080", "v2", sig),
		"empty":                 s.Verify("shop/app", "8080", "v2", ""),
		"truncated":             s.Verify("shop/app", "8080", "v2", sig[:len(sig)-1]),
		"padded":                s.Verify("shop/app", "8080", "v2", sig+"="),
		"not base64":            s.Verify("shop/app", "8080", "v2", "!!!!!!!!!!!!!!!!!!!!!!"),
		"one character flipped": s.Verify("shop/app", "8080", "v2", flip(sig)),
	} {
		if ok {
			t.Errorf("%s: verified, want refused", name)
		}
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func TestNewRefusesShortKey(t *testing.T) {
	if _, err := New(make([]byte, KeySize-1)); err == nil {
		t.Fatal("New accepted a 31-byte key")
	}
}

func FuzzVerify(f *testing.F) {
	s := signer(f, 3)
	f.Add("shop/app", "80", "", s.Sign("shop/app", "80", ""))
	f.Add("shop/app", "", "v1", "AAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, target, port, subset, sig string) {
		if s.Verify(target, port, subset, sig) && sig != s.Sign(target, port, subset) {
			t.Fatalf("Verify(%q, %q, %q, %q) accepted a signature Sign does not make", target, port, subset, sig)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	s := signer(b, 4)
	sig := s.Sign("shop/app", "8080", "v2")
	b.ReportAllocs()
	for b.Loop() {
		if !s.Verify("shop/app", "8080", "v2", sig) {
			b.Fatal("refused")
		}
	}
}
