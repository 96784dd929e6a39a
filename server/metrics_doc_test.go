package server

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADMEMetricNames: every cairn_* metric the README names (its
// metrics table, the alerting rules, the sizing notes) is a metric this
// package declares, so that a renamed metric cannot leave dashboards and
// alerts in the docs pointing at nothing. A histogram's _bucket, _sum and
// _count series count as the histogram; a grep pattern ('^cairn_raft') may
// name a prefix.
func TestREADMEMetricNames(t *testing.T) {
	sources, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	literal := regexp.MustCompile(`"(cairn_[a-z_]+)"`)
	for _, f := range sources {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
			declared[m[1]] = true
		}
	}
	if len(declared) < 15 {
		t.Fatalf("found only %d metric names in the package's sources: %v", len(declared), declared)
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile(`(\^?)(cairn_[a-z_]+)`)
	checked := 0
	for _, m := range named.FindAllStringSubmatch(string(readme), -1) {
		name := m[2]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base := strings.TrimSuffix(name, suffix); base != name && declared[base] {
				name = base
			}
		}
		checked++
		if declared[name] {
			continue
		}
		prefixOK := false
		for d := range declared {
			prefixOK = prefixOK || m[1] == "^" && strings.HasPrefix(d, name+"_")
		}
		if !prefixOK {
			t.Errorf("README.md names metric %s, which the server does not declare", m[2])
		}
	}
	if checked < 20 {
		t.Fatalf("README.md names only %d metrics", checked)
	}
}
