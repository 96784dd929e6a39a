package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"slices"
)

// verifyKey is one public key and the one algorithm it verifies.
type verifyKey struct {
	kid string // empty: matches any token
	alg string
	key crypto.PublicKey
}

// RSA modulus bounds: weaker keys are refused, and huge ones would make
// every verification expensive.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// algFor returns the one algorithm pub verifies. want, when set (a JWK's
// "alg"), must be an algorithm that fits the key.
func algFor(pub crypto.PublicKey, want string) (string, error) {
	var fits []string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return "", fmt.Errorf("%w: RSA key of %d bits; %d to %d are accepted", ErrBadKey, bits, minRSABits, maxRSABits)
		}
		fits = []string{"RS256", "RS384", "RS512"}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			fits = []string{"ES256"}
		case elliptic.P384():
			fits = []string{"ES384"}
		case elliptic.P521():
			fits = []string{"ES512"}
		default:
			return "", fmt.Errorf("%w: unsupported ECDSA curve", ErrBadKey)
		}
	case ed25519.PublicKey:
		fits = []string{"EdDSA"}
	default:
		return "", fmt.Errorf("%w: unsupported key type %T", ErrBadKey, pub)
	}
	if want == "" {
		return fits[0], nil
	}
	if !slices.Contains(fits, want) {
		return "", fmt.Errorf("%w: alg %q does not fit the key (use %v)", ErrBadKey, want, fits)
	}
	return want, nil
}

// parsePEMKeys parses the public keys of a PEM file: PUBLIC KEY, RSA
// PUBLIC KEY and CERTIFICATE blocks. Any other block (a private key put
// there by mistake, say) is an error, and so is a file without keys.
func parsePEMKeys(b []byte) ([]verifyKey, error) {
	var out []verifyKey
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		var pub crypto.PublicKey
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = c.PublicKey
			}
		default:
			return nil, fmt.Errorf("%w: PEM block %q is not a public key or certificate", ErrBadKey, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: PEM block %d: %w", ErrBadKey, len(out)+1, err)
		}
		alg, err := algFor(pub, "")
		if err != nil {
			return nil, err
		}
		out = append(out, verifyKey{alg: alg, key: pub})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no PEM public key found", ErrBadKey)
	}
	return out, nil
}

// jwk is one JSON Web Key, the fields this package reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS parses a JSON Web Key Set. Keys for encryption (use "enc") and
// of key types this package does not know are skipped, as RFC 7517 asks;
// a key of a known type that is malformed fails the whole set, so that a
// broken file never silently drops keys. A set without a usable signature
// key is an error.
func parseJWKS(b []byte) ([]verifyKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%w: JWKS is not valid JSON: %w", ErrBadKey, err)
	}
	var out []verifyKey
	for i, raw := range set.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			return nil, fmt.Errorf("%w: JWKS key %d: %w", ErrBadKey, i, err)
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i, k.Kid, err)
		}
		if pub == nil {
			continue // a key type this package does not know
		}
		alg, err := algFor(pub, k.Alg)
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i, k.Kid, err)
		}
		out = append(out, verifyKey{kid: k.Kid, alg: alg, key: pub})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: JWKS holds no usable signature key", ErrBadKey)
	}
	return out, nil
}

// publicKey decodes k; nil and no error for a key type this package does
// not know.
func (k jwk) publicKey() (crypto.PublicKey, error) {
	switch k.Kty {
	case "RSA":
		n, err := b64(k.N, "n", 0)
		if err != nil {
			return nil, err
		}
		e, err := b64(k.E, "e", 0)
		if err != nil {
			return nil, err
		}
		if len(n) == 0 || len(n) > maxRSABits/8+1 || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("%w: RSA n or e out of range", ErrBadKey)
		}
		exp := new(big.Int).SetBytes(e)
		if exp.Int64() < 3 || exp.Int64() > 1<<31-1 || exp.Bit(0) == 0 {
			return nil, fmt.Errorf("%w: RSA exponent out of range", ErrBadKey)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp.Int64())}, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("%w: EC curve %q is not P-256, P-384 or P-521", ErrBadKey, k.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err := b64(k.X, "x", size)
		if err != nil {
			return nil, err
		}
		y, err := b64(k.Y, "y", size)
		if err != nil {
			return nil, err
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("%w: EC point: %w", ErrBadKey, err)
		}
		return pub, nil
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, fmt.Errorf("%w: OKP curve %q is not Ed25519", ErrBadKey, k.Crv)
		}
		x, err := b64(k.X, "x", ed25519.PublicKeySize)
		if err != nil {
			return nil, err
		}
		return ed25519.PublicKey(x), nil
	case "oct":
		return nil, fmt.Errorf("%w: symmetric keys do not belong in a JWKS file; configure the HMAC secret instead", ErrBadKey)
	}
	return nil, nil
}

// b64 decodes a base64url field (unpadded); size, when not 0, is the
// exact length required.
func b64(s, field string, size int) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not base64url: %w", ErrBadKey, field, err)
	}
	if size != 0 && len(b) != size {
		return nil, fmt.Errorf("%w: %s is %d bytes, want %d", ErrBadKey, field, len(b), size)
	}
	return b, nil
}

// readKeyFile reads a key file, bounded in size.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadKey, path, err)
	}
	if len(b) > maxKeyFileBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrBadKey, path, maxKeyFileBytes)
	}
	return b, nil
}
