package server

import (
	"strings"
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestLeaderVerifiesForwardedIdentity: a follower forwards a write (and
// asks the leader for a read index) with the caller's token, and the
// leader verifies it itself. Here the leader also requires a second
// audience: a token the followers accept but the leader does not is
// refused on its forwarded write and linearizable read, while the
// follower's own serializable read of the same token is served; a token
// both accept writes through the follower.
func TestLeaderVerifiesForwardedIdentity(t *testing.T) {
	const strict = "leader-audience"
	c := mustStartCluster(t, 3, clusterOptions{Configure: func(id string, cfg *NodeConfig) {
		cfg.Server.Auth = testAuthConfig()
		if id == "node1" {
			cfg.Server.Auth.Audience = strict
		}
		both := validClaims("admin", "*")
		both["aud"] = []string{testAudience, strict}
		cfg.JoinToken = mustSignToken(t, jwt.SigningMethodHS256, testAuthSecret, "", both)
	}})
	both := validClaims("admin", "*")
	both["aud"] = []string{testAudience, strict}
	admin := mustSignToken(t, jwt.SigningMethodHS256, testAuthSecret, "", both)
	followersOnly := tokenFor(t, "contributor", "fw") // aud: testAudience only

	// Make node1, the strict one, the leader.
	if l := c.leader(t); l.id != "node1" {
		_, err := l.cluster().TransferLeadership(withToken(testCtx(t), admin), &cairnv1.TransferLeadershipRequest{Id: "node1"})
		if err != nil {
			t.Fatalf("TransferLeadership to node1: %v", err)
		}
		waitFor(t, waitLong, "node1 to lead", func() bool { return c.leader(t).id == "node1" })
	}
	leader := c.leader(t)
	if _, err := leader.namespaces().PutNamespace(withToken(testCtx(t), admin), namespaceRequest("fw")); err != nil {
		t.Fatal(err)
	}
	follower := c.followers(t)[0]
	c.waitConverged(t)

	_, err := follower.objects().PutKey(withToken(testCtx(t), followersOnly), putKeyRequest("fw", "o", "k"))
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "audience") {
		t.Errorf("forwarded write of a token the leader refuses: %v, want Unauthenticated naming the audience", err)
	}
	_, err = follower.objects().GetKey(withToken(testCtx(t), followersOnly), &cairnv1.GetKeyRequest{Namespace: "fw", Object: "o", Key: "k"})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("linearizable read of a token the leader refuses: %v, want Unauthenticated", err)
	}
	_, err = follower.objects().GetKey(withToken(testCtx(t), followersOnly), &cairnv1.GetKeyRequest{Namespace: "fw", Object: "o", Key: "k", Consistency: Serializable})
	if status.Code(err) != codes.NotFound {
		t.Errorf("serializable read on the follower: %v, want NotFound (served locally)", err)
	}
	if _, err := follower.objects().PutKey(withToken(testCtx(t), admin), putKeyRequest("fw", "o", "k")); err != nil {
		t.Errorf("forwarded write of a token both accept: %v", err)
	}
}
