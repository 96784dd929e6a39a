package fsync

// Dir does nothing: Windows cannot flush a directory handle, and NTFS
// journals its directory changes itself.
func Dir(string) error { return nil }
