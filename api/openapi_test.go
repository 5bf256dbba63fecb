package api

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"
)

// pendingRoutes are routes docs/openapi.yaml describes that the router may not have yet
// (as "METHOD /openapi/{path}"). The partner routes are registered by partner.go and
// member.go; list a route here only while its handler is being written, and empty this
// when it is.
var pendingRoutes = map[string]bool{}

// undocumentedPaths are registered but outside the versioned API, so the comparison
// leaves them out (they are in the document anyway).
var undocumentedPaths = map[string]bool{"/healthz": true, "/metrics": true}

// TestOpenAPI checks that docs/openapi.yaml is a valid OpenAPI 3 document and that it
// describes exactly the routes the server registers.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatalf("load docs/openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("docs/openapi.yaml is not valid OpenAPI: %v", err)
	}

	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			documented[method+" "+path] = true
			checkOperation(t, method, path, op)
		}
	}

	e := newEnv(t)
	registered := map[string]bool{}
	for _, r := range e.srv.Handler().(*echo.Echo).Routes() {
		if r.Method == echo.RouteNotFound || undocumentedPaths[r.Path] {
			continue
		}
		registered[r.Method+" "+openAPIPath(r.Path)] = true
	}

	var undocumented, missing, stale []string
	for route := range registered {
		if !documented[route] {
			undocumented = append(undocumented, route)
		}
		if pendingRoutes[route] {
			stale = append(stale, route)
		}
	}
	for route := range documented {
		path := route[strings.Index(route, " ")+1:]
		if !registered[route] && !pendingRoutes[route] && !undocumentedPaths[path] {
			missing = append(missing, route)
		}
	}
	for name, list := range map[string][]string{
		"registered but not in docs/openapi.yaml":        undocumented,
		"in docs/openapi.yaml but not registered":        missing,
		"registered now: remove them from pendingRoutes": stale,
	} {
		if len(list) > 0 {
			sort.Strings(list)
			t.Errorf("routes %s:\n  %s", name, strings.Join(list, "\n  "))
		}
	}
}

// checkOperation checks what every operation must say: its error answers, and the
// Idempotency-Key of a partner write.
func checkOperation(t *testing.T, method, path string, op *openapi3.Operation) {
	t.Helper()
	if undocumentedPaths[path] {
		return
	}
	for _, status := range []string{"401", "403"} {
		if op.Responses.Value(status) == nil {
			t.Errorf("%s %s does not document its %s answer", method, path, status)
		}
	}
	partnerWrite := method == http.MethodPost && strings.HasPrefix(path, "/v1/partners/{partner}/") &&
		!strings.HasSuffix(path, "/contracts") && !strings.HasSuffix(path, "/batch")
	if !partnerWrite {
		return
	}
	for _, p := range op.Parameters {
		if p.Value != nil && p.Value.In == "header" && p.Value.Name == "Idempotency-Key" && p.Value.Required {
			return
		}
	}
	t.Errorf("%s %s is a partner write without a required Idempotency-Key header", method, path)
}

// openAPIPath turns an echo route pattern into an OpenAPI path: /a/:b becomes /a/{b}.
func openAPIPath(p string) string {
	parts := strings.Split(p, "/")
	for i, part := range parts {
		if name, ok := strings.CutPrefix(part, ":"); ok {
			parts[i] = "{" + name + "}"
		}
	}
	return strings.Join(parts, "/")
}
