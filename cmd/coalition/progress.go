package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
)

// meter shows the progress of long work on one line of a terminal, redrawn at most ten
// times a second; on anything that is not a terminal (a log, a pipe) it shows nothing,
// so that scripts read clean output.
type meter struct {
	w     io.Writer
	what  string
	on    bool
	mu    sync.Mutex
	last  time.Time
	drawn bool
}

// newMeter returns a meter of what on w.
func newMeter(w io.Writer, what string) *meter {
	on := false
	if f, ok := w.(*os.File); ok {
		on = isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
	}
	return &meter{w: w, what: what, on: on}
}

// Update shows done of total (total 0: unknown); reaching the total ends the line.
func (m *meter) Update(done, total int64) {
	if !m.on {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if time.Since(m.last) < 100*time.Millisecond && done != total {
		return
	}
	m.last, m.drawn = time.Now(), true
	if total > 0 {
		fmt.Fprintf(m.w, "\r%s: %d of %d (%d%%)\033[K", m.what, done, total, done*100/total)
	} else {
		fmt.Fprintf(m.w, "\r%s: %d\033[K", m.what, done)
	}
	if total > 0 && done >= total {
		fmt.Fprintln(m.w)
		m.drawn = false
	}
}

// Done ends the meter's line.
func (m *meter) Done() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.drawn {
		fmt.Fprintln(m.w)
		m.drawn = false
	}
}
