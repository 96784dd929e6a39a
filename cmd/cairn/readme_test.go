package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// readmeCommand is one shell command of the README's examples, with the
// HTTP status its comment promises (200 when it promises none).
type readmeCommand struct {
	line       int
	cmd        string
	wantStatus string
}

var statusComment = regexp.MustCompile(`^# HTTP (\d{3})`)

// readmeCommands returns the curl commands of the README's ```sh blocks,
// in order, continuation lines joined.
func readmeCommands(t *testing.T) []readmeCommand {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []readmeCommand
	inSh := false
	want := ""
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "```sh"):
			inSh, want = true, ""
			continue
		case strings.HasPrefix(l, "```"):
			inSh = false
			continue
		}
		if !inSh {
			continue
		}
		if strings.HasPrefix(l, "#") {
			if m := statusComment.FindStringSubmatch(l); m != nil {
				want = m[1]
			}
			continue
		}
		if !strings.HasPrefix(l, "curl ") {
			continue
		}
		c := readmeCommand{line: i + 1, wantStatus: "200"}
		if want != "" {
			c.wantStatus, want = want, ""
		}
		cmd := l
		for strings.HasSuffix(cmd, "\\") || strings.Count(cmd, "'")%2 == 1 {
			i++
			cmd += "\n" + lines[i]
		}
		c.cmd = cmd
		out = append(out, c)
	}
	return out
}

// TestREADMEExamples starts `cairn dev` as the README says and runs every
// curl example of the README against it, in order: each must exit 0 and
// answer the HTTP status its comment promises (200 otherwise).
func TestREADMEExamples(t *testing.T) {
	for _, tool := range []string{"curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README examples need %s on PATH", tool)
		}
	}
	cmds := readmeCommands(t)
	if len(cmds) < 20 {
		t.Fatalf("found only %d curl examples in README.md", len(cmds))
	}
	dir := t.TempDir()
	dev := startCairn(t, dir, "dev")
	waitFor(t, 60*time.Second, "cairn dev to print its addresses", func() bool {
		select {
		case <-dev.done:
			t.Fatalf("cairn dev exited before it was ready (are its ports 7301-7503 taken?):\n%s", dev.out.String())
		default:
		}
		return strings.Contains(dev.out.String(), "Press Ctrl-C")
	})
	// The examples send the admin token dev printed, as the README says.
	tok := regexp.MustCompile(`export CAIRN_TOKEN=(\S+)`).FindStringSubmatch(dev.out.String())
	if tok == nil {
		t.Fatalf("cairn dev printed no admin token:\n%s", dev.out.String())
	}
	env := append(os.Environ(), "CAIRN_TOKEN="+tok[1])
	for _, c := range cmds {
		if strings.Contains(c.cmd, ":watch") {
			// A watch streams until stopped: run it briefly; it must have
			// opened (its first message says created).
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			watch := exec.CommandContext(ctx, "bash", "-c", c.cmd)
			watch.Env = env
			out, _ := watch.CombinedOutput()
			cancel()
			if !strings.Contains(string(out), `"created":true`) && !strings.Contains(string(out), `"created": true`) {
				t.Errorf("README.md:%d: %s\nthe watch did not open:\n%s", c.line, c.cmd, out)
			}
			continue
		}
		// Append the status after the body; pipelines keep their meaning.
		shell := strings.Replace(c.cmd, "curl -s ", "curl -s -w '\\nHTTP-STATUS:%{http_code}\\n' ", 1)
		sh := exec.Command("bash", "-o", "pipefail", "-c", shell)
		sh.Env = env
		out, err := sh.CombinedOutput()
		if err != nil {
			t.Errorf("README.md:%d: %s\nexit: %v\n%s", c.line, c.cmd, err, out)
			continue
		}
		m := regexp.MustCompile(`HTTP-STATUS:(\d{3})`).FindSubmatch(out)
		if m == nil {
			if !strings.Contains(c.cmd, "|") {
				t.Errorf("README.md:%d: no HTTP status in output:\n%s", c.line, out)
			}
			continue
		}
		if string(m[1]) != c.wantStatus {
			t.Errorf("README.md:%d: %s\nHTTP %s, README promises %s\n%s", c.line, c.cmd, m[1], c.wantStatus, out)
		}
	}
	dev.stop(t)
	if _, err := os.Stat(filepath.Join(dir, "cairn-data", "n1", "fsm", "state.db")); err != nil {
		t.Errorf("cairn dev left no data under ./cairn-data: %v", err)
	}
}
