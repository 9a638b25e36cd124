// Command cosigverify is an independent verifier of C2SP tlog-cosignature (Ed25519,
// cosignature/v1) lines, written from the spec text on top of Go's reference signed-note
// implementation (golang.org/x/mod/sumdb/note). It shares no code with flowguard.
//
// Usage: cosigverify NOTE_FILE LOG_VKEY WITNESS_VKEY...
//
// It opens the note with the log's key and the witnesses' keys (note.Open rejects a bad
// signature by any known key) and exits 0 only when the log and every given witness
// signed; it prints one line per verified witness: "<name> <timestamp>".
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

const algCosignatureV1 = 0x04

type cosigVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosigVerifier) Name() string    { return v.name }
func (v *cosigVerifier) KeyHash() uint32 { return v.hash }

func (v *cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	if t > 1<<63-1 {
		return false
	}
	m := []byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t))
	m = append(m, msg...)
	return ed25519.Verify(v.key, m, sig[8:])
}

func newCosigVerifier(vkey string) (*cosigVerifier, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("malformed vkey %q", vkey)
	}
	name := parts[0]
	hash, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil || len(parts[1]) != 8 {
		return nil, fmt.Errorf("bad key hash in %q", vkey)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != algCosignatureV1 {
		return nil, fmt.Errorf("not an Ed25519 cosignature/v1 key: %q", vkey)
	}
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write(raw)
	sum := h.Sum(nil)
	if binary.BigEndian.Uint32(sum[:4]) != uint32(hash) {
		return nil, fmt.Errorf("key hash does not match the key in %q", vkey)
	}
	return &cosigVerifier{name: name, hash: uint32(hash), key: ed25519.PublicKey(raw[1:])}, nil
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: cosigverify NOTE_FILE LOG_VKEY WITNESS_VKEY...")
		os.Exit(2)
	}
	msg, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	logVerifier, err := note.NewVerifier(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	verifiers := []note.Verifier{logVerifier}
	witnesses := map[string]bool{}
	for _, vkey := range os.Args[3:] {
		v, err := newCosigVerifier(vkey)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		verifiers = append(verifiers, v)
		witnesses[v.name] = false
	}
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		fmt.Fprintln(os.Stderr, "note does not verify:", err)
		os.Exit(1)
	}
	logSigned := false
	for _, s := range n.Sigs {
		if s.Name == logVerifier.Name() && s.Hash == logVerifier.KeyHash() {
			logSigned = true
			continue
		}
		raw, _ := base64.StdEncoding.DecodeString(s.Base64)
		witnesses[s.Name] = true
		fmt.Printf("%s %d\n", s.Name, binary.BigEndian.Uint64(raw[4:12]))
	}
	missing := false
	for name, ok := range witnesses {
		if !ok {
			fmt.Fprintln(os.Stderr, "no cosignature by", name)
			missing = true
		}
	}
	if !logSigned || missing || !bytes.HasSuffix(msg, []byte("\n")) {
		os.Exit(1)
	}
}
