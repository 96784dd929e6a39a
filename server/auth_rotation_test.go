package server

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/auth"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// mustWriteJWKS writes a JWKS of keys (kid → public key: ECDSA P-256 or
// Ed25519) to path, atomically.
func mustWriteJWKS(t *testing.T, path string, keys map[string]any) {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	var set []map[string]string
	for kid, k := range keys {
		switch pub := k.(type) {
		case *ecdsa.PublicKey:
			b, err := pub.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			set = append(set, map[string]string{"kty": "EC", "crv": "P-256", "kid": kid, "x": enc(b[1:33]), "y": enc(b[33:])})
		case ed25519.PublicKey:
			set = append(set, map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": enc(pub)})
		default:
			t.Fatalf("no JWK for %T", k)
		}
	}
	b, err := json.Marshal(map[string]any{"keys": set})
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestJWKSKeyRotation rotates the signing keys of a three-node cluster
// whose tokens are verified against a JWKS file: once by an explicit
// reload (what SIGHUP does) and once by the reload interval. After each
// rotation a token of the new key is accepted, on a follower that
// forwards the write to the leader too, and a token of the removed key
// is refused.
func TestJWKSKeyRotation(t *testing.T) {
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	keyA, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyB, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, keyC, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mustWriteJWKS(t, jwks, map[string]any{"a": keyA.Public()})
	claims := func() jwt.MapClaims { return validClaims("contributor", "rot") }
	tokA := mustSignToken(t, jwt.SigningMethodES256, keyA, "a", claims())
	tokB := mustSignToken(t, jwt.SigningMethodES256, keyB, "b", claims())
	tokC := mustSignToken(t, jwt.SigningMethodEdDSA, keyC, "c", claims())
	admin := mustSignToken(t, jwt.SigningMethodES256, keyA, "a", validClaims("admin", "*"))

	c := mustStartCluster(t, 3, clusterOptions{Configure: func(_ string, cfg *NodeConfig) {
		cfg.Server.Auth = auth.Config{JWKSFile: jwks, Issuer: testIssuer, Audience: testAudience, ReloadInterval: time.Second}
		cfg.JoinToken = admin
	}})
	leader := c.leader(t)
	if _, err := leader.namespaces().PutNamespace(withToken(testCtx(t), admin), namespaceRequest("rot")); err != nil {
		t.Fatal(err)
	}
	follower := c.followers(t)[0]
	put := func(token string) error {
		_, err := follower.objects().PutKey(withToken(testCtx(t), token), putKeyRequest("rot", "o", "k"))
		return err
	}
	if err := put(tokA); err != nil {
		t.Fatalf("key a before rotation: %v", err)
	}
	if err := put(tokB); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("key b before it is added: %v", err)
	}

	// Rotation by an explicit reload on every node (SIGHUP in the CLI).
	mustWriteJWKS(t, jwks, map[string]any{"b": keyB.Public()})
	for _, n := range c.running() {
		if err := n.Server.ReloadAuthKeys(); err != nil {
			t.Fatalf("%s: ReloadAuthKeys: %v", n.id, err)
		}
	}
	if err := put(tokB); err != nil {
		t.Errorf("key b after reload: %v", err)
	}
	if err := put(tokA); status.Code(err) != codes.Unauthenticated {
		t.Errorf("removed key a after reload: %v, want Unauthenticated", err)
	}

	// Rotation by the reload interval alone.
	mustWriteJWKS(t, jwks, map[string]any{"c": keyC.Public()})
	waitFor(t, waitLong, "every node to reload the JWKS on its interval", func() bool {
		for _, n := range c.running() {
			if _, err := n.objects().GetKey(withToken(testCtx(t), tokC), &cairnv1.GetKeyRequest{Namespace: "rot", Object: "o", Key: "k", Consistency: Serializable}); status.Code(err) == codes.Unauthenticated {
				return false
			}
		}
		return true
	})
	if err := put(tokC); err != nil {
		t.Errorf("key c after the interval: %v", err)
	}
	if err := put(tokB); status.Code(err) != codes.Unauthenticated {
		t.Errorf("removed key b after the interval: %v, want Unauthenticated", err)
	}

	// A broken file keeps the keys in use.
	if err := os.WriteFile(jwks, []byte(`{"keys": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := follower.Server.ReloadAuthKeys(); err == nil {
		t.Error("ReloadAuthKeys of a broken JWKS succeeded")
	}
	if err := put(tokC); err != nil {
		t.Errorf("a failed reload dropped key c: %v", err)
	}
}
