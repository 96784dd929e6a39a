package server

import (
	"bytes"
	"fmt"
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// A ListKeys page may exceed gRPC's default 4 MiB receive limit, so a
// client with default options cannot list an object of large values.
func TestListPageWithinDefaultGRPCLimit(t *testing.T) {
	c := mustStartCluster(t, 1, clusterOptions{})
	l := c.leader(t)
	mustPutNamespace(t, l, "big")
	var puts []*cairnv1.KeyPut
	for i := range 6 {
		puts = append(puts, &cairnv1.KeyPut{Key: fmt.Sprint(i), Content: &cairnv1.KeyPut_BinaryValue{BinaryValue: bytes.Repeat([]byte{byte(i)}, 1<<20)}})
	}
	if _, err := l.objects().BatchWrite(testCtx(t), &cairnv1.BatchWriteRequest{Namespace: "big", Object: "o", Puts: puts}); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(l.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials())) // default options
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := cairnv1.NewObjectServiceClient(conn).ListKeys(testCtx(t), &cairnv1.ListKeysRequest{Namespace: "big", Object: "o"}); err != nil {
		t.Errorf("ListKeys with a default gRPC client: %v", err)
	}
}
