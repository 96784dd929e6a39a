package server

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// sentinels is the hand list of every sentinel error of fsm, raftnode and
// this package, with the gRPC code the API must answer it with.
// TestErrorCodesCoverEverySentinel finds sentinels this list misses.
var sentinels = []struct {
	name string
	err  error
	code codes.Code
}{
	{"fsm.ErrInvalidArgument", fsm.ErrInvalidArgument, codes.InvalidArgument},
	{"fsm.ErrNamespaceNotFound", fsm.ErrNamespaceNotFound, codes.NotFound},
	{"fsm.ErrNamespaceNotEmpty", fsm.ErrNamespaceNotEmpty, codes.FailedPrecondition},
	{"fsm.ErrObjectNotFound", fsm.ErrObjectNotFound, codes.NotFound},
	{"fsm.ErrKeyNotFound", fsm.ErrKeyNotFound, codes.NotFound},
	{"fsm.ErrQuotaExceeded", fsm.ErrQuotaExceeded, codes.ResourceExhausted},
	{"fsm.ErrMemberNotFound", fsm.ErrMemberNotFound, codes.NotFound},
	{"fsm.ErrAlarmNotFound", fsm.ErrAlarmNotFound, codes.NotFound},
	{"fsm.ErrStaleAck", fsm.ErrStaleAck, codes.FailedPrecondition},
	{"fsm.ErrWrongDeliveryMode", fsm.ErrWrongDeliveryMode, codes.FailedPrecondition},
	{"fsm.ErrUnsupportedCommand", fsm.ErrUnsupportedCommand, codes.FailedPrecondition},
	{"fsm.ErrBadSnapshot", fsm.ErrBadSnapshot, codes.DataLoss},
	{"fsm.ErrClosed", fsm.ErrClosed, codes.Unavailable},
	{"fsm.ErrInUse", fsm.ErrInUse, codes.Unavailable},
	{"fsm.ErrStorage", fsm.ErrStorage, codes.Unavailable},
	{"fsm.ErrDamaged", fsm.ErrDamaged, codes.DataLoss},
	{"raftnode.ErrNotLeader", raftnode.ErrNotLeader, codes.Unavailable},
	{"raftnode.ErrLeadershipLost", raftnode.ErrLeadershipLost, codes.Unavailable},
	{"raftnode.ErrTimeout", raftnode.ErrTimeout, codes.Unavailable},
	{"raftnode.ErrShutdown", raftnode.ErrShutdown, codes.Unavailable},
	{"raftnode.ErrUnknownServer", raftnode.ErrUnknownServer, codes.NotFound},
	{"raftnode.ErrLogStorage", raftnode.ErrLogStorage, codes.Unavailable},
	{"server.ErrNoLeader", ErrNoLeader, codes.Unavailable},
	{"server.ErrLeaderUnreachable", ErrLeaderUnreachable, codes.Unavailable},
	{"server.ErrMemberTooOld", ErrMemberTooOld, codes.FailedPrecondition},
	{"server.ErrMemberUnreachable", ErrMemberUnreachable, codes.Unavailable},
	{"server.ErrTooStale", ErrTooStale, codes.Unavailable},
	{"server.ErrCompacted", ErrCompacted, codes.OutOfRange},
	{"server.ErrWatchTooSlow", ErrWatchTooSlow, codes.ResourceExhausted},
	{"server.ErrWatchRestart", ErrWatchRestart, codes.Unavailable},
	{"fsm.ErrRequestIDReused", fsm.ErrRequestIDReused, codes.AlreadyExists},
}

// declaredSentinel is an exported Err... variable found in a package's
// source.
type declaredSentinel struct {
	name string // pkg.ErrX
	msg  string // the errors.New message; "" when not declared that way
	pos  string
}

// parseSentinels returns every exported package-level variable named
// Err... in the non-test Go files of dir.
func parseSentinels(t *testing.T, pkg, dir string) []declaredSentinel {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	fset := token.NewFileSet()
	var out []declaredSentinel
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}
		for _, decl := range file.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.VAR {
				continue
			}
			for _, spec := range gen.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "Err") || !name.IsExported() {
						continue
					}
					d := declaredSentinel{name: pkg + "." + name.Name, pos: fset.Position(name.Pos()).String()}
					if i < len(vs.Values) {
						d.msg = errorsNewMessage(vs.Values[i])
					}
					out = append(out, d)
				}
			}
		}
	}
	return out
}

// errorsNewMessage returns the message of an errors.New("...") call, or "".
func errorsNewMessage(e ast.Expr) string {
	call, ok := e.(*ast.CallExpr)
	if !ok || len(call.Args) != 1 {
		return ""
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "New" {
		return ""
	}
	if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "errors" {
		return ""
	}
	lit, ok := call.Args[0].(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return ""
	}
	s, err := strconv.Unquote(lit.Value)
	if err != nil {
		return ""
	}
	return s
}

// TestErrorCodesCoverEverySentinel parses fsm, raftnode and server for
// exported Err... variables: each must have an entry in the errorCodes
// table (found by its message), so that a new sentinel without one fails
// here instead of surfacing as Internal; and every sentinel of the hand
// list must still exist.
func TestErrorCodesCoverEverySentinel(t *testing.T) {
	listed := map[string]bool{}
	for _, s := range sentinels {
		listed[s.name] = true
	}
	inTable := map[string]bool{}
	for _, e := range errorCodes {
		inTable[e.err.Error()] = true
	}
	var declared []declaredSentinel
	declared = append(declared, parseSentinels(t, "fsm", "../fsm")...)
	declared = append(declared, parseSentinels(t, "raftnode", "../raftnode")...)
	declared = append(declared, parseSentinels(t, "server", ".")...)
	if len(declared) < len(sentinels) {
		t.Fatalf("parsing found %d sentinels, the hand list has %d", len(declared), len(sentinels))
	}
	found := map[string]bool{}
	for _, d := range declared {
		found[d.name] = true
		if !listed[d.name] {
			// Its code is not pinned down yet; its table entry is still
			// required below.
			t.Logf("%s (%s) is not in this test's sentinel list: add it with the code the API must answer", d.name, d.pos)
		}
		if d.msg == "" {
			t.Errorf("%s (%s) is not declared as errors.New(\"...\")", d.name, d.pos)
		} else if !inTable[d.msg] {
			t.Errorf("%s (%q, %s) has no entry in errorCodes", d.name, d.msg, d.pos)
		}
	}
	for _, s := range sentinels {
		if !found[s.name] {
			t.Errorf("%s is in the hand list but was not found in the source", s.name)
		}
	}
}

// TestErrorCodesTable checks the code of every sentinel, bare and
// wrapped, and that the message drops the package prefix.
func TestErrorCodesTable(t *testing.T) {
	for _, s := range sentinels {
		inTable := false
		for _, e := range errorCodes {
			inTable = inTable || e.err == s.err
		}
		if !inTable {
			t.Errorf("%s is not in errorCodes", s.name)
		}
		for _, err := range []error{
			s.err,
			fmt.Errorf("context of the failure: %w", s.err),
			fmt.Errorf("outer: %w", fmt.Errorf("inner %q: %w", "x", s.err)),
			fmt.Errorf("%w: and a cause: %w", s.err, errors.New("cause")),
		} {
			st, ok := status.FromError(toStatus(err))
			if !ok || st.Code() != s.code {
				t.Errorf("toStatus(%q) = %v, want %s", err, st, s.code)
				continue
			}
			for _, prefix := range []string{"fsm: ", "raftnode: ", "server: "} {
				if strings.Contains(st.Message(), prefix) {
					t.Errorf("toStatus(%q) message %q keeps the prefix %q", err, st.Message(), prefix)
				}
			}
			if !strings.Contains(err.Error(), st.Message()[:min(8, len(st.Message()))]) {
				t.Errorf("toStatus(%q) message %q does not come from the error", err, st.Message())
			}
		}
	}
	// No entry is shadowed by an earlier one with another code.
	for _, e := range errorCodes {
		if got := status.Code(toStatus(e.err)); got != e.code {
			t.Errorf("errorCodes entry %q (%s) answers %s: an earlier entry matches it", e.err, e.code, got)
		}
	}
}

func TestToStatus(t *testing.T) {
	if toStatus(nil) != nil {
		t.Fatal("toStatus(nil) is not nil")
	}
	// Status errors, such as a forwarded call's answer, pass unchanged.
	for _, st := range []error{
		status.Error(codes.Aborted, "fsm: compare failed"),
		status.Error(codes.NotFound, "no such thing"),
		status.Error(codes.Unavailable, "connection refused"),
		invalidf("key is %d bytes, limit is %d", 2049, 2048),
	} {
		if got := toStatus(st); got != st {
			t.Errorf("toStatus(%v) = %v, want it unchanged", st, got)
		}
	}
	if got := status.Code(invalidf("x")); got != codes.InvalidArgument {
		t.Errorf("invalidf gives %s", got)
	}
	// Unknown errors are Internal, with their message.
	for _, err := range []error{errors.New("disk on fire"), fmt.Errorf("wrapped: %w", errors.New("disk on fire"))} {
		st, _ := status.FromError(toStatus(err))
		if st.Code() != codes.Internal || !strings.Contains(st.Message(), "disk on fire") {
			t.Errorf("toStatus(%q) = %v, want Internal with the message", err, st)
		}
	}
	// Context errors keep their meaning.
	for err, want := range map[error]codes.Code{
		context.DeadlineExceeded: codes.DeadlineExceeded,
		context.Canceled:         codes.Canceled,
		fmt.Errorf("waiting: %w", context.DeadlineExceeded): codes.DeadlineExceeded,
		fmt.Errorf("%w: %w", ErrNoLeader, context.Canceled): codes.Unavailable,
		fmt.Errorf("%w: key %q", fsm.ErrKeyNotFound, "k/1"): codes.NotFound,
	} {
		if got := status.Code(toStatus(err)); got != want {
			t.Errorf("toStatus(%q) = %s, want %s", err, got, want)
		}
	}
}
