package nodeagent

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHealthAndReadiness(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	a := &Agent{metrics: NewMetrics(), now: func() time.Time { return now }}
	a.health.staleAfter = time.Minute
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	steps := []struct {
		name       string
		do         func()
		live, read int
		says       string
	}{
		{"starting", func() {}, 200, 503, "informer has not synced"},
		{"synced", func() { a.health.synced.Store(true) }, 200, 503, "not subscribed"},
		{"subscribed", func() { a.health.subscribed.Store(true) }, 200, 503, "no check pass yet"},
		{"checked", func() { a.health.lastCheck.Store(now.UnixNano()) }, 200, 200, ""},
		{"stuck", func() { now = now.Add(2 * time.Minute) }, 503, 200, "last check pass was 2m0s ago"},
	}
	for _, s := range steps {
		s.do()
		live, lbody := get("/healthz")
		ready, rbody := get("/readyz")
		if live != s.live || ready != s.read {
			t.Errorf("%s: /healthz %d (%s), /readyz %d (%s); want %d, %d", s.name, live, lbody, ready, rbody, s.live, s.read)
		}
		if s.says != "" && !strings.Contains(lbody+rbody, s.says) {
			t.Errorf("%s: answers %q / %q do not say %q", s.name, lbody, rbody, s.says)
		}
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "stargate_nodeagent_checks_total") && !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: %d %.200s", code, body)
	}
}
