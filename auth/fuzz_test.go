package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerify feeds arbitrary strings to Verify. It must never panic, every
// refusal must wrap one of the verification sentinels, and the only tokens
// accepted are the ones the test signed: no mutation of a token verifies.
func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	pemFile := mustWrite(f, dir+"/keys.pem", append(pemPublic(f, testKeys.rsa.Public()), pemPublic(f, testKeys.ed.Public())...))
	jwksFile := mustWrite(f, dir+"/jwks.json", jwksJSON(f, jwkOf(f, "ec-1", testKeys.ec.Public())))
	v := mustVerifier(f, Config{HMACSecret: testSecret, PublicKeyFile: pemFile, JWKSFile: jwksFile})
	// The fuzzing engine runs this setup again in each worker process, which
	// checks the seeds the coordinator added: the tokens must come out the
	// same there, so their claims carry fixed times (tokenClaims uses the
	// clock, and a second boundary between two setups made a seed "a token
	// the test did not sign"). ECDSA signatures are randomized, so the
	// ES256 token is recognised by its signed part alone.
	fixed := func(role string, namespaces ...string) jwt.MapClaims {
		c := tokenClaims(role, namespaces...)
		c["iat"], c["exp"] = int64(1_700_000_000), int64(4_000_000_000)
		return c
	}
	es := mustSign(f, jwt.SigningMethodES256, testKeys.ec, "ec-1", fixed("viewer", "*"))
	signed := []string{
		mustSign(f, jwt.SigningMethodHS256, testSecret, "", fixed("admin", "*")),
		mustSign(f, jwt.SigningMethodHS512, testSecret, "", fixed("viewer", "a", "b")),
		mustSign(f, jwt.SigningMethodRS256, testKeys.rsa, "", fixed("contributor", "x")),
		es,
		mustSign(f, jwt.SigningMethodEdDSA, testKeys.ed, "", fixed("admin")),
	}
	signedPart := func(token string) string { return token[:max(strings.LastIndexByte(token, '.'), 0)] }
	for _, s := range signed {
		f.Add(s)
	}
	f.Add(noneToken(f, tokenClaims("admin", "*")))
	f.Add(mustSign(f, jwt.SigningMethodHS256, pemPublic(f, testKeys.rsa.Public()), "", tokenClaims("admin", "*")))
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.")
	sentinels := []error{ErrNoToken, ErrMalformed, ErrAlgorithm, ErrUnknownKey, ErrSignature, ErrExpired,
		ErrNotYetValid, ErrIssuer, ErrAudience, ErrClaims}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.Verify(token)
		if err != nil {
			if !slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
				t.Fatalf("error %v wraps no verification sentinel", err)
			}
			return
		}
		if !slices.Contains(signed, token) && signedPart(token) != signedPart(es) {
			t.Fatalf("accepted a token the test did not sign: %q", token)
		}
		if id.Role == RoleNone || id.Token != token {
			t.Fatalf("identity %+v", id)
		}
	})
}

// FuzzParseJWKS: parseJWKS never panics, and every key it returns has an
// algorithm that fits its type.
func FuzzParseJWKS(f *testing.F) {
	f.Add(jwksJSON(f, jwkOf(f, "r", testKeys.rsa.Public()), jwkOf(f, "e", testKeys.ec.Public()), jwkOf(f, "d", testKeys.ed.Public())))
	f.Add([]byte(`{"keys": []}`))
	f.Add([]byte(`{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}`))
	f.Add([]byte(`{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}`))
	f.Add([]byte(`{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "RS512"}]}`))
	f.Add([]byte(`{"keys": [{"kty": "OKP", "crv": "X25519", "x": "AA"}, {"kty": "unknown"}, {"use": "enc"}]}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseJWKS(data)
		if err != nil {
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("error %v is not ErrBadKey", err)
			}
			return
		}
		checkKeys(t, keys)
	})
}

// FuzzParsePEMKeys: parsePEMKeys never panics, and every key it returns
// has an algorithm that fits its type.
func FuzzParsePEMKeys(f *testing.F) {
	f.Add(append(pemPublic(f, testKeys.rsa.Public()), pemPublic(f, testKeys.ec.Public())...))
	f.Add(pemPublic(f, testKeys.ed.Public()))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("not pem"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parsePEMKeys(data)
		if err != nil {
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("error %v is not ErrBadKey", err)
			}
			return
		}
		checkKeys(t, keys)
	})
}

func checkKeys(t *testing.T, keys []verifyKey) {
	t.Helper()
	if len(keys) == 0 {
		t.Fatal("no error and no keys")
	}
	for _, k := range keys {
		ok := false
		switch k.key.(type) {
		case *rsa.PublicKey:
			ok = slices.Contains([]string{"RS256", "RS384", "RS512"}, k.alg)
		case *ecdsa.PublicKey:
			ok = slices.Contains([]string{"ES256", "ES384", "ES512"}, k.alg)
		case ed25519.PublicKey:
			ok = k.alg == "EdDSA"
		}
		if !ok {
			t.Fatalf("key %T with algorithm %q", k.key, k.alg)
		}
	}
}
