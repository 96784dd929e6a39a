package main

import "google.golang.org/protobuf/types/known/structpb"

// structValue converts a decoded JSON document to a protobuf Value.
func structValue(v any) (*structpb.Value, error) { return structpb.NewValue(v) }
