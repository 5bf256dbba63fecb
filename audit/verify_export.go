package audit

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/coalitionledger/coalition/ledger"
)

// MaxExportLine bounds one line of a JSON-lines export (an entry has at most
// ledger.MaxPostings postings and ledger.MaxMetadataBytes of metadata).
const MaxExportLine = 4 << 20

// lineReader reads the lines of a JSON-lines export, remembering the last line number.
type lineReader struct {
	sc   *bufio.Scanner
	line int
	kind string
	raw  []byte
}

// read reads the next line and its type; io.EOF at the end of the file.
func (r *lineReader) read() error {
	if !r.sc.Scan() {
		if err := r.sc.Err(); err != nil {
			return fmt.Errorf("export line %d: %w", r.line+1, err)
		}
		return io.EOF
	}
	r.line++
	r.raw = r.sc.Bytes()
	var t struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(r.raw, &t); err != nil {
		if r.line == 1 && !bytes.HasPrefix(bytes.TrimSpace(r.raw), []byte("{")) {
			return fmt.Errorf("export line 1 is not JSON: only a JSON-lines export (coalition export --format jsonl) can be verified, not a CSV or hledger one")
		}
		return fmt.Errorf("export line %d: %w", r.line, err)
	}
	r.kind = t.Type
	return nil
}

// decode decodes the current line into v and refuses a line that is not exactly what the
// export writes for v: an unknown field, a key repeated or in other case (which Go reads
// one way and jq another), or other spacing. What verify checks is then what every
// other tool reads.
func (r *lineReader) decode(v any) error {
	if err := json.Unmarshal(r.raw, v); err != nil {
		return fmt.Errorf("export line %d (%s): %w", r.line, r.kind, err)
	}
	again, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("export line %d (%s): %w", r.line, r.kind, err)
	}
	if !bytes.Equal(again, bytes.TrimRight(r.raw, "\r\n")) {
		return &Failure{Position: r.position(), Reason: fmt.Sprintf("export line %d (%s) is not as the export writes it: a field is unknown, repeated, in other case or reformatted", r.line, r.kind)}
	}
	return nil
}

// position returns the "position" field of the current line, or 0.
func (r *lineReader) position() int64 {
	var p struct {
		Position int64 `json:"position"`
	}
	_ = json.Unmarshal(r.raw, &p)
	return p.Position
}

// VerifyExport verifies a JSON-lines export exactly as VerifyDatabase verifies the
// database: the same checks, the same first failure. A partial export (not from the
// first entry to the head) is checked from the hash its header gives for the entry before
// it, and without the balances.
func VerifyExport(r io.Reader, o VerifyOptions) (*Verification, error) {
	lr := &lineReader{sc: bufio.NewScanner(r)}
	lr.sc.Buffer(make([]byte, 0, 64<<10), MaxExportLine)
	if err := lr.read(); err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("the export is empty")
		}
		return nil, err
	}
	var h ExportHeader
	if lr.kind != "header" {
		return nil, fmt.Errorf("export line 1 is a %q, not the header", lr.kind)
	}
	if err := lr.decode(&h); err != nil {
		return nil, err
	}
	if h.Format != ExportFormatName || h.Version != ExportVersion {
		return nil, fmt.Errorf("the export is %s version %d; this verifies %s version %d", h.Format, h.Version, ExportFormatName, ExportVersion)
	}
	units, err := ledger.NewUnits(h.Currency, h.PointsScale)
	if err != nil {
		return nil, fmt.Errorf("export header: %w", err)
	}
	prev, err := hex.DecodeString(h.PrevHash)
	if err != nil {
		return nil, fmt.Errorf("export header: prev_hash: %w", err)
	}
	toHash, err := hex.DecodeString(h.ToHash)
	if err != nil {
		return nil, fmt.Errorf("export header: to_hash: %w", err)
	}
	src := &source{kind: "export", units: units, from: h.From, prevHash: prev, to: h.To, toHash: toHash}
	// The checkpoints come before the entries.
	pending := false // the current line is read but not consumed
	for {
		if err := lr.read(); err != nil {
			if err == io.EOF {
				return nil, fmt.Errorf("the export ends after line %d without its end record: it was cut short", lr.line)
			}
			return nil, err
		}
		if lr.kind != "checkpoint" {
			pending = true
			break
		}
		var rec CheckpointRecord
		if err := lr.decode(&rec); err != nil {
			return nil, err
		}
		cp, err := rec.Checkpoint()
		if err != nil {
			return nil, fmt.Errorf("export line %d: %w", lr.line, err)
		}
		src.checkpoints = append(src.checkpoints, cp)
	}
	var end *EndRecord
	advance := func() error {
		if pending {
			pending = false
			return nil
		}
		if err := lr.read(); err != nil {
			if err == io.EOF {
				return fmt.Errorf("the export ends after line %d without its end record: it was cut short", lr.line)
			}
			return err
		}
		return nil
	}
	src.next = func() (*ledger.Posted, error) {
		if err := advance(); err != nil {
			return nil, err
		}
		if lr.kind != "entry" {
			pending = true
			return nil, io.EOF
		}
		var rec EntryRecord
		if err := lr.decode(&rec); err != nil {
			return nil, err
		}
		return rec.posted()
	}
	readEnd := func() error {
		if err := advance(); err != nil {
			return err
		}
		if lr.kind != "end" {
			return fmt.Errorf("export line %d is a %q where the end record belongs", lr.line, lr.kind)
		}
		end = &EndRecord{}
		if err := lr.decode(end); err != nil {
			return err
		}
		// Nothing may follow the end: jq and hledger would read it, verify would not.
		switch err := lr.read(); {
		case err == nil:
			return &Failure{Position: h.To, Reason: fmt.Sprintf("export line %d (%s) follows the end record", lr.line, lr.kind)}
		case err != io.EOF:
			return err
		}
		return nil
	}
	if !h.Complete {
		src.finish = func(entries int64) error {
			if err := readEnd(); err != nil {
				return err
			}
			return checkEnd(end, entries)
		}
	} else {
		// The end record follows the balances: finish only keeps the count for it.
		var entries int64
		src.finish = func(n int64) error { entries = n; return nil }
		src.balances = func(fn func(ledger.AccountBalance) error) error {
			for {
				if err := advance(); err != nil {
					return err
				}
				if lr.kind != "balance" {
					pending = true
					break
				}
				var b BalanceRecord
				if err := lr.decode(&b); err != nil {
					return err
				}
				if err := fn(ledger.AccountBalance{Account: b.Account, Unit: b.Unit, Balance: b.Balance}); err != nil {
					return err
				}
			}
			if err := readEnd(); err != nil {
				return err
			}
			return checkEnd(end, entries)
		}
	}
	return verify(src, o)
}

// checkEnd compares the end record with the entries read.
func checkEnd(end *EndRecord, entries int64) error {
	if end.Entries != entries {
		return fmt.Errorf("the export's end record counts %d entries; it holds %d", end.Entries, entries)
	}
	return nil
}
