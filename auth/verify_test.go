package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestVerify runs each token against a verifier holding an HMAC secret, a
// PEM file with an RSA and an Ed25519 key, and a JWKS with an ECDSA key,
// and checks what is accepted and, for what is refused, the sentinel.
func TestVerify(t *testing.T) {
	dir := t.TempDir()
	pemFile := mustWrite(t, dir+"/keys.pem", append(pemPublic(t, testKeys.rsa.Public()), pemPublic(t, testKeys.ed.Public())...))
	jwksFile := mustWrite(t, dir+"/jwks.json", jwksJSON(t, jwkOf(t, "ec-1", testKeys.ec.Public())))
	v := mustVerifier(t, Config{
		HMACSecret: testSecret, PublicKeyFile: pemFile, JWKSFile: jwksFile,
		Issuer: "https://issuer.example", Audience: "cairn", Leeway: 5 * time.Second,
	})
	good := func() jwt.MapClaims {
		c := tokenClaims("contributor", "chat")
		c["iss"], c["aud"] = "https://issuer.example", []string{"other", "cairn"}
		return c
	}
	with := func(k string, val any) jwt.MapClaims {
		c := good()
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	now := time.Now()
	rsaPubPEM := pemPublic(t, testKeys.rsa.Public())
	cases := []struct {
		name  string
		token string
		want  error // nil: accepted
	}{
		{"HS256", mustSign(t, jwt.SigningMethodHS256, testSecret, "", good()), nil},
		{"HS384", mustSign(t, jwt.SigningMethodHS384, testSecret, "", good()), nil},
		{"HS512", mustSign(t, jwt.SigningMethodHS512, testSecret, "", good()), nil},
		{"RS256 from PEM", mustSign(t, jwt.SigningMethodRS256, testKeys.rsa, "", good()), nil},
		{"EdDSA from PEM", mustSign(t, jwt.SigningMethodEdDSA, testKeys.ed, "", good()), nil},
		{"ES256 from JWKS by kid", mustSign(t, jwt.SigningMethodES256, testKeys.ec, "ec-1", good()), nil},
		{"ES256 from JWKS without kid", mustSign(t, jwt.SigningMethodES256, testKeys.ec, "", good()), nil},
		{"namespaces as a single star", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("namespaces", "*")), nil},
		{"nbf within leeway", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("nbf", now.Add(3*time.Second).Unix())), nil},
		{"expired within leeway", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("exp", now.Add(-3*time.Second).Unix())), nil},

		{"empty", "", ErrNoToken},
		{"garbage", "not.a.jwt", ErrMalformed},
		{"two segments", "abc.def", ErrMalformed},
		{"too large", strings.Repeat("a", MaxTokenBytes+1), ErrMalformed},
		{"alg none", noneToken(t, good()), ErrAlgorithm},
		{"alg none with a signature", noneToken(t, good()) + "c2ln", ErrAlgorithm},
		{"HS256 signed with the RSA public key", mustSign(t, jwt.SigningMethodHS256, rsaPubPEM, "", good()), ErrSignature},
		{"RS384 with an RS256 key", mustSign(t, jwt.SigningMethodRS384, testKeys.rsa, "", good()), ErrAlgorithm},
		{"PS256 not configured", mustSign(t, jwt.SigningMethodPS256, testKeys.rsa, "", good()), ErrAlgorithm},
		{"ES384 not configured", mustSign(t, jwt.SigningMethodES384, mustP384(t), "", good()), ErrAlgorithm},
		{"wrong HMAC secret", mustSign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), "", good()), ErrSignature},
		{"ES256 by an unknown key", mustSign(t, jwt.SigningMethodES256, testKeys.other, "", good()), ErrSignature},
		{"unknown kid", mustSign(t, jwt.SigningMethodES256, testKeys.other, "ec-2", good()), ErrUnknownKey},
		{"tampered payload", tamper(mustSign(t, jwt.SigningMethodHS256, testSecret, "", good())), ErrSignature},
		{"no exp", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("exp", nil)), ErrClaims},
		{"expired", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("exp", now.Add(-time.Minute).Unix())), ErrExpired},
		{"nbf in the future", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("nbf", now.Add(time.Minute).Unix())), ErrNotYetValid},
		{"iat in the future", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("iat", now.Add(time.Minute).Unix())), ErrNotYetValid},
		{"wrong issuer", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("iss", "https://evil.example")), ErrIssuer},
		{"no issuer", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("iss", nil)), ErrIssuer},
		{"wrong audience", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("aud", "someone-else")), ErrAudience},
		{"no audience", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("aud", nil)), ErrAudience},
		{"no role", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("role", nil)), ErrClaims},
		{"unknown role", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("role", "root")), ErrClaims},
		{"role of the wrong type", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("role", 3)), ErrMalformed},
		{"namespaces of the wrong type", mustSign(t, jwt.SigningMethodHS256, testSecret, "", with("namespaces", 7)), ErrMalformed},
	}
	for _, c := range cases {
		id, err := v.Verify(c.token)
		switch {
		case c.want == nil && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want == nil && (id.Role != RoleContributor || !id.AllowsNamespace("chat") || id.Token != c.token):
			t.Errorf("%s: identity %+v", c.name, id)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		case c.want != nil && strings.Contains(err.Error(), string(testSecret)):
			t.Errorf("%s: the error leaks the secret: %v", c.name, err)
		}
	}
}

// TestVerifyOnlyHMAC checks that a verifier configured with only an HMAC
// secret refuses every public-key algorithm, and one restricted to HS512
// refuses HS256.
func TestVerifyOnlyHMAC(t *testing.T) {
	v := mustVerifier(t, Config{HMACSecret: testSecret})
	for _, tok := range []string{
		mustSign(t, jwt.SigningMethodRS256, testKeys.rsa, "", tokenClaims("admin", "*")),
		mustSign(t, jwt.SigningMethodES256, testKeys.ec, "", tokenClaims("admin", "*")),
		mustSign(t, jwt.SigningMethodEdDSA, testKeys.ed, "", tokenClaims("admin", "*")),
	} {
		if _, err := v.Verify(tok); !errors.Is(err, ErrAlgorithm) {
			t.Errorf("got %v, want ErrAlgorithm", err)
		}
	}
	v512 := mustVerifier(t, Config{HMACSecret: testSecret, HMACAlgorithms: []string{"HS512"}})
	if _, err := v512.Verify(mustSign(t, jwt.SigningMethodHS256, testSecret, "", tokenClaims("admin", "*"))); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("HS256 with only HS512 configured: %v", err)
	}
	if _, err := v512.Verify(mustSign(t, jwt.SigningMethodHS512, testSecret, "", tokenClaims("admin", "*"))); err != nil {
		t.Errorf("HS512: %v", err)
	}
}

// TestVerifyPublicKeyOnlyRefusesHMAC: with only public keys configured, an
// HS256 token whose "secret" is the public key's PEM (the classic
// algorithm-confusion attack) is refused for its algorithm.
func TestVerifyPublicKeyOnlyRefusesHMAC(t *testing.T) {
	pubPEM := pemPublic(t, testKeys.rsa.Public())
	v := mustVerifier(t, Config{PublicKeyFile: mustWrite(t, tempPath(t, "k.pem"), pubPEM)})
	if _, err := v.Verify(mustSign(t, jwt.SigningMethodHS256, pubPEM, "", tokenClaims("admin", "*"))); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("HS256 keyed with the public key: %v, want ErrAlgorithm", err)
	}
}

// TestReloadRotatesKeys: after the JWKS file changes and Reload runs, a
// token of the new key is accepted and one of the removed key refused; a
// broken file leaves the keys in use as they were.
func TestReloadRotatesKeys(t *testing.T) {
	path := tempPath(t, "jwks.json")
	mustWrite(t, path, jwksJSON(t, jwkOf(t, "old", testKeys.ec.Public())))
	v := mustVerifier(t, Config{JWKSFile: path, ReloadInterval: time.Minute})
	oldTok := mustSign(t, jwt.SigningMethodES256, testKeys.ec, "old", tokenClaims("viewer", "a"))
	newTok := mustSign(t, jwt.SigningMethodES256, testKeys.other, "new", tokenClaims("viewer", "a"))
	if _, err := v.Verify(oldTok); err != nil {
		t.Fatalf("old key before rotation: %v", err)
	}
	if _, err := v.Verify(newTok); err == nil {
		t.Fatal("new key accepted before it was added")
	}
	mustWrite(t, path, jwksJSON(t, jwkOf(t, "new", testKeys.other.Public())))
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(newTok); err != nil {
		t.Errorf("new key after rotation: %v", err)
	}
	if _, err := v.Verify(oldTok); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("removed key after rotation: %v, want ErrUnknownKey", err)
	}
	mustWrite(t, path, []byte(`{"keys": [{"kty": "EC", "crv": "P-256", "x": "!!"}]}`))
	if err := v.Reload(); !errors.Is(err, ErrBadKey) {
		t.Errorf("Reload of a broken file: %v, want ErrBadKey", err)
	}
	if _, err := v.Verify(newTok); err != nil {
		t.Errorf("a failed reload dropped the keys: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{HMACSecret: []byte("short")},
		{HMACSecret: testSecret, HMACAlgorithms: []string{"RS256"}},
		{HMACAlgorithms: []string{"HS256"}, JWKSFile: "x"},
		{HMACSecret: testSecret, Leeway: -time.Second},
		{HMACSecret: testSecret, ReloadInterval: time.Millisecond},
	}
	for _, c := range bad {
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrConfig", c, err)
		}
	}
	if (Config{}).Enabled() || DefaultConfig().Enabled() {
		t.Error("a Config without keys is enabled")
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
	if _, err := NewVerifier(Config{}); !errors.Is(err, ErrConfig) {
		t.Errorf("NewVerifier(zero) = %v", err)
	}
	if _, err := NewVerifier(Config{PublicKeyFile: tempPath(t, "missing.pem")}); !errors.Is(err, ErrBadKey) {
		t.Errorf("NewVerifier(missing file) = %v", err)
	}
}

// TestMintHS256 checks that minted tokens verify with their grant, and
// that MintHS256 refuses what would make a useless token.
func TestMintHS256(t *testing.T) {
	v := mustVerifier(t, Config{HMACSecret: testSecret, Issuer: "me", Audience: "cairn"})
	tok, err := MintHS256(testSecret, Grant{Role: RoleAdmin, Namespaces: []string{AllNamespaces}, TTL: time.Hour, Subject: "ops", Issuer: "me", Audience: "cairn"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if id.Role != RoleAdmin || !id.AllowsNamespace("anything") || id.Subject != "ops" || time.Until(id.Expires) < 59*time.Minute {
		t.Errorf("identity %+v", id)
	}
	tok, err = MintHS256(testSecret, Grant{Role: RoleViewer, TTL: time.Minute, Issuer: "me", Audience: "cairn"})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := v.Verify(tok); err != nil || id.AllowsNamespace("x") || id.Can(RoleContributor) {
		t.Errorf("viewer without namespaces: %+v, %v", id, err)
	}
	for _, g := range []Grant{{TTL: time.Hour}, {Role: RoleViewer}} {
		if _, err := MintHS256(testSecret, g); !errors.Is(err, ErrConfig) {
			t.Errorf("MintHS256(%+v) = %v", g, err)
		}
	}
	if _, err := MintHS256([]byte("short"), Grant{Role: RoleViewer, TTL: time.Hour}); !errors.Is(err, ErrConfig) {
		t.Errorf("short secret: %v", err)
	}
	s, err := NewSecret()
	if err != nil || len(s) < MinHMACSecretBytes {
		t.Errorf("NewSecret() = %q, %v", s, err)
	}
}

// tamper raises the token's role to admin, keeping its signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		panic(err)
	}
	payload = []byte(strings.Replace(string(payload), `"contributor"`, `"admin"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func mustP384(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
