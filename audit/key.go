package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// KeyFileEnv names the environment variable that overrides DefaultKeyPath.
const KeyFileEnv = "COALITION_CHECKPOINT_KEY"

// keyFileName is the name of the signing key beside the embedded data folder.
const keyFileName = "checkpoint.key"

// DefaultKeyPath returns where the checkpoint signing key lives: $COALITION_CHECKPOINT_KEY
// when set, else checkpoint.key beside the embedded PostgreSQL's data folder dataDir (for
// /var/lib/coalition/pgdata, /var/lib/coalition/checkpoint.key). The key is never stored
// in the database: whoever can rewrite the database cannot also forge a checkpoint.
func DefaultKeyPath(dataDir string) string {
	if p := os.Getenv(KeyFileEnv); p != "" {
		return p
	}
	return filepath.Join(filepath.Dir(filepath.Clean(dataDir)), keyFileName)
}

// PublicKeyPath returns the path of the public key written beside a signing key.
func PublicKeyPath(keyPath string) string { return keyPath + ".pub" }

// LoadOrCreateKey reads the ed25519 signing key at path (PKCS #8, PEM), or generates one
// there when the file does not exist, with the public key beside it (PublicKeyPath, PKIX,
// PEM). created reports whether it generated the key.
func LoadOrCreateKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	key, err = LoadKey(path)
	if err == nil {
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint key: %w", err)
	}
	// The folder others may pass through: the key file itself is the secret (0600), the
	// public key beside it is meant to be read, and the default folder also holds the
	// embedded PostgreSQL's data, which its server (another user) must reach.
	dir := filepath.Dir(path)
	_, missing := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, false, fmt.Errorf("checkpoint key: %w", err)
	}
	if errors.Is(missing, fs.ErrNotExist) {
		// Whatever the umask (077 on a hardened host) made of it.
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, false, fmt.Errorf("checkpoint key: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another process made it first: use theirs.
		key, err = LoadKey(path)
		return key, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("checkpoint key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("checkpoint key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("checkpoint key %s: %w", path, err)
	}
	if err := WritePublicKey(PublicKeyPath(path), key.Public().(ed25519.PublicKey)); err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// LoadKey reads an ed25519 signing key (PKCS #8, PEM) from path.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint key: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("checkpoint key %s: not a PEM \"PRIVATE KEY\"", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("checkpoint key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("checkpoint key %s: a %T, not an ed25519 key", path, k)
	}
	return key, nil
}

// WritePublicKey writes an ed25519 public key to path (PKIX, PEM), readable by anyone.
func WritePublicKey(path string, pub ed25519.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	raw := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	return nil
}

// LoadPublicKey reads an ed25519 public key (PKIX, PEM, as WritePublicKey writes it) from
// path.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return ParsePublicKey(raw)
}

// ParsePublicKey parses an ed25519 public key in PEM (PKIX).
func ParsePublicKey(raw []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("public key: not a PEM \"PUBLIC KEY\"")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key: a %T, not an ed25519 key", k)
	}
	return pub, nil
}

// PublicKeyPEM returns an ed25519 public key in PEM (PKIX).
func PublicKeyPEM(pub ed25519.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err) // an ed25519.PublicKey always marshals
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
