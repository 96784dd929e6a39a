package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// bindConfigFile sets every flag of fs that neither the command line nor
// the environment set from the file at path: one "name = value" (or
// "name: value") per line, names as the flags are spelt without "--",
// slice values comma-separated, "#" starting a comment. Precedence is
// command line, then environment, then file, then default.
func bindConfigFile(fs *pflag.FlagSet, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var errs []string
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i < 0 {
			errs = append(errs, fmt.Sprintf("%s:%d: want name = value", path, n))
			continue
		}
		name, value := strings.TrimSpace(line[:i]), strings.Trim(strings.TrimSpace(line[i+1:]), `"`)
		fl := fs.Lookup(name)
		switch {
		case fl == nil || name == "config":
			errs = append(errs, fmt.Sprintf("%s:%d: unknown setting %q", path, n, name))
		case fl.Changed:
		default:
			if err := fs.Set(name, value); err != nil {
				errs = append(errs, fmt.Sprintf("%s:%d: %s: %v", path, n, name, err))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// newLoggerFormat returns a logger on stderr at level, as text or JSON.
func newLoggerFormat(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// httpHeaderTimeout bounds how long the admin listener waits for a
// request's headers.
const httpHeaderTimeout = 10 * time.Second

// serveAdmin serves Go's pprof profiles on addr (an opt-in listener, never
// the API's) until the process exits.
func serveAdmin(addr string, log *slog.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--admin-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() {
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: httpHeaderTimeout}
		if err := srv.Serve(l); err != nil {
			log.Error("admin listener stopped", "err", err)
		}
	}()
	log.Info("pprof on the admin listener", "addr", l.Addr().String())
	return nil
}
