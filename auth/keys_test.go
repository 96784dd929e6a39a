package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"
)

// TestParseJWKS checks which keys a JWKS yields: signature keys of the
// three supported types with the algorithm their type (or "alg") says,
// encryption keys and unknown types skipped, and broken, weak or
// symmetric keys refused.
func TestParseJWKS(t *testing.T) {
	rsaJWK := jwkOf(t, "r", testKeys.rsa.Public())
	rsa512 := jwkOf(t, "r512", testKeys.rsa.Public())
	rsa512["alg"] = "RS512"
	enc := jwkOf(t, "enc", testKeys.ec.Public())
	enc["use"] = "enc"
	keys, err := parseJWKS(jwksJSON(t, rsaJWK, rsa512, jwkOf(t, "e", testKeys.ec.Public()), jwkOf(t, "d", testKeys.ed.Public()),
		enc, map[string]any{"kty": "future-kty", "kid": "f"}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, k.kid+":"+k.alg)
	}
	want := []string{"r:RS256", "r512:RS512", "e:ES256", "d:EdDSA"}
	if len(got) != len(want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("keys %v, want %v", got, want)
		}
	}

	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	mismatch := jwkOf(t, "m", testKeys.ec.Public())
	mismatch["alg"] = "RS256"
	badPoint := jwkOf(t, "p", testKeys.ec.Public())
	badPoint["y"] = badPoint["x"]
	for name, set := range map[string][]byte{
		"not JSON":          []byte("{"),
		"no keys":           []byte(`{"keys": []}`),
		"only enc":          jwksJSON(t, enc),
		"weak RSA":          jwksJSON(t, jwkOf(t, "w", weak.Public())),
		"alg does not fit":  jwksJSON(t, mismatch),
		"point off curve":   jwksJSON(t, badPoint),
		"symmetric key":     []byte(`{"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}`),
		"unknown curve":     []byte(`{"keys": [{"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}]}`),
		"short Ed25519 key": []byte(`{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}`),
		"even exponent":     []byte(`{"keys": [{"kty": "RSA", "n": "` + rsaJWK["n"].(string) + `", "e": "Ag"}]}`),
	} {
		if _, err := parseJWKS(set); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: %v, want ErrBadKey", name, err)
		}
	}
}

// TestParsePEMKeys: public keys and certificates are read; a private key
// in the file is refused rather than used.
func TestParsePEMKeys(t *testing.T) {
	keys, err := parsePEMKeys(append(append(pemPublic(t, testKeys.rsa.Public()), pemPublic(t, testKeys.ec.Public())...), pemPublic(t, testKeys.ed.Public())...))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || keys[0].alg != "RS256" || keys[1].alg != "ES256" || keys[2].alg != "EdDSA" {
		t.Fatalf("keys %+v", keys)
	}
	for name, b := range map[string][]byte{
		"empty":       nil,
		"not PEM":     []byte("hello"),
		"private key": []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		"bad DER":     []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
	} {
		if _, err := parsePEMKeys(b); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: %v, want ErrBadKey", name, err)
		}
	}
}
