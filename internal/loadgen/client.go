package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"time"
)

// maxAnswer bounds an answer body the tool reads.
const maxAnswer = 4 << 20

// client sends the workload's requests to one server with a partner key per partner.
type client struct {
	base    string // http://127.0.0.1:PORT
	http    *http.Client
	secrets map[string]string // partner → bearer secret
	// retryFor is how long a write is retried on a transport error or a 5xx; zero: once.
	retryFor time.Duration
	stats    *stats
}

// answer is an HTTP answer, read whole.
type answer struct {
	status   int
	body     []byte
	replayed bool
	err      error // transport error of the last attempt, when there was no answer
}

// code returns the error code of an error answer, or "".
func (a answer) code() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(a.body, &e)
	return e.Error.Code
}

// retryable says whether a write should be sent again with the same key: no answer, or
// a 5xx (which is never stored as a first answer).
func (a answer) retryable() bool { return a.err != nil || a.status >= 500 }

// send sends one request, retrying a retryable failure with the same key and body until
// it gets an answer that is not, ctx ends, or retryFor has passed.
func (c *client) send(ctx context.Context, method, partner, path, key string, body []byte) answer {
	start := time.Now()
	var a answer
	for attempt := 1; ; attempt++ {
		a = c.once(ctx, method, partner, path, key, body)
		if !a.retryable() || ctx.Err() != nil || time.Since(start) >= c.retryFor {
			return a
		}
		c.stats.retried(a)
		backoff := time.Duration(attempt) * 5 * time.Millisecond
		if backoff > 200*time.Millisecond {
			backoff = 200 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return a
		case <-time.After(backoff):
		}
	}
}

func (c *client) once(ctx context.Context, method, partner, path, key string, body []byte) answer {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+c.secrets[partner])
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return answer{err: err}
	}
	return answer{status: resp.StatusCode, body: raw, replayed: resp.Header.Get("Idempotent-Replayed") == "true"}
}

// sameAnswer compares two answers as JSON values.
func sameAnswer(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}

// writeAnswer is the part of a write's answer the tool follows.
type writeAnswer struct {
	Entry *struct {
		ID string `json:"id"`
	} `json:"entry"`
	Member struct {
		Balance string `json:"balance"`
	} `json:"member"`
	Hold struct {
		ID string `json:"id"`
	} `json:"hold"`
}

func parseWrite(body []byte) (writeAnswer, int64, error) {
	var w writeAnswer
	if err := json.Unmarshal(body, &w); err != nil {
		return w, 0, err
	}
	bal, err := strconv.ParseInt(w.Member.Balance, 10, 64)
	if err != nil {
		return w, 0, fmt.Errorf("member balance %q: %w", w.Member.Balance, err)
	}
	return w, bal, nil
}
