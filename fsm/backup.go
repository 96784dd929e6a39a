package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// Backup file format (see DESIGN.md, "Backup files"):
//
//	header:   "CAIRNBAK" | version uint32 BE | index uint64 BE | term uint64 BE
//	body:     a snapshot stream (WriteTo), ending with its own CRC-32C
//	trailer:  SHA-256 of every byte before it (header and body)
const (
	backupMagic = "CAIRNBAK"
	// BackupVersion is the backup file format this build writes and reads.
	BackupVersion = 1
	// BackupHeaderSize and BackupTrailerSize frame the snapshot stream
	// inside a backup file.
	BackupHeaderSize  = len(backupMagic) + 4 + 8 + 8
	BackupTrailerSize = sha256.Size
)

// BackupInfo describes a backup file.
type BackupInfo struct {
	// Index is the applied index of the state the backup holds.
	Index uint64
	// Term is the Raft term of the cluster it was taken from.
	Term uint64
	// Size is the file's length in bytes.
	Size int64
}

// WriteBackup writes the snapshot s as a backup file to w: header, the
// snapshot stream, and the SHA-256 trailer. term is the Raft term to
// record. Like WriteTo it may run concurrently with applies.
func WriteBackup(w io.Writer, s *Snapshot, term uint64) (int64, error) {
	h := sha256.New()
	hw := io.MultiWriter(w, h)
	hdr := make([]byte, 0, BackupHeaderSize)
	hdr = append(hdr, backupMagic...)
	hdr = binary.BigEndian.AppendUint32(hdr, BackupVersion)
	hdr = binary.BigEndian.AppendUint64(hdr, s.Index())
	hdr = binary.BigEndian.AppendUint64(hdr, term)
	n, err := hw.Write(hdr)
	total := int64(n)
	if err != nil {
		return total, err
	}
	m, err := s.WriteTo(hw)
	total += m
	if err != nil {
		return total, err
	}
	n, err = w.Write(h.Sum(nil))
	return total + int64(n), err
}

// VerifyBackup reads a whole backup file from r and checks it before it is
// used: the header, that the body is a complete snapshot stream whose
// checksum is right and whose state records the header's index and a
// storage format this build reads, the SHA-256 trailer, and that nothing
// follows it. It changes nothing. Errors wrap ErrBadBackup.
func VerifyBackup(r io.Reader) (BackupInfo, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	sr := &shaReader{r: br, h: sha256.New()}
	var info BackupInfo
	var hdr [BackupHeaderSize]byte
	if _, err := io.ReadFull(sr, hdr[:]); err != nil {
		return info, fmt.Errorf("%w: truncated header: %w", ErrBadBackup, err)
	}
	if string(hdr[:len(backupMagic)]) != backupMagic {
		return info, fmt.Errorf("%w: not a cairn backup (no CAIRNBAK header)", ErrBadBackup)
	}
	if v := binary.BigEndian.Uint32(hdr[len(backupMagic):]); v != BackupVersion {
		return info, fmt.Errorf("%w: format version %d, this build reads %d", ErrBadBackup, v, BackupVersion)
	}
	info.Index = binary.BigEndian.Uint64(hdr[len(backupMagic)+4:])
	info.Term = binary.BigEndian.Uint64(hdr[len(backupMagic)+12:])
	index, serr := verifySnapshotStream(sr)
	// The SHA-256 is checked first: on a damaged file it says so plainly,
	// whatever the damage did to the stream.
	want := sr.h.Sum(nil)
	var sum [BackupTrailerSize]byte
	_, terr := io.ReadFull(br, sum[:])
	switch {
	case serr != nil && terr != nil:
		return info, fmt.Errorf("%w: truncated or corrupted: %w", ErrBadBackup, serr)
	case terr != nil:
		return info, fmt.Errorf("%w: truncated: no SHA-256 trailer", ErrBadBackup)
	case !bytes.Equal(sum[:], want):
		return info, fmt.Errorf("%w: SHA-256 mismatch: the file is corrupted", ErrBadBackup)
	case serr != nil:
		return info, fmt.Errorf("%w: %w", ErrBadBackup, serr)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return info, fmt.Errorf("%w: unexpected bytes after the trailer", ErrBadBackup)
	}
	if index != info.Index {
		return info, fmt.Errorf("%w: header says index %d, the snapshot %d", ErrBadBackup, info.Index, index)
	}
	info.Size = sr.n + BackupTrailerSize
	return info, nil
}

// BackupSnapshot returns the snapshot stream inside a backup file of size
// bytes (one VerifyBackup accepted), ready for Restore.
func BackupSnapshot(f io.ReaderAt, size int64) *io.SectionReader {
	return io.NewSectionReader(f, int64(BackupHeaderSize), size-int64(BackupHeaderSize)-BackupTrailerSize)
}

// verifySnapshotStream reads a snapshot stream (WriteTo) to its end and
// checks it as Restore would, without building anything: it returns the
// header's index.
func verifySnapshotStream(rd *shaReader) (uint64, error) {
	cr := &crcReader{r: rd, crc: crc32.New(crcTable)}
	index, err := ReadSnapshotIndex(cr)
	if err != nil {
		return 0, err
	}
	var bucket []byte
	var applied []byte
	var format []byte
	seenBucket := false
	for {
		tag, err := cr.ReadByte()
		if err != nil {
			return 0, fmt.Errorf("%w: truncated: %w", ErrBadSnapshot, err)
		}
		switch tag {
		case 'B':
			if bucket, err = readField(cr); err != nil {
				return 0, fmt.Errorf("%w: bucket: %w", ErrBadSnapshot, err)
			}
			seenBucket = true
		case 'R':
			k, err := readField(cr)
			if err != nil {
				return 0, fmt.Errorf("%w: key: %w", ErrBadSnapshot, err)
			}
			v, err := readField(cr)
			if err != nil {
				return 0, fmt.Errorf("%w: value: %w", ErrBadSnapshot, err)
			}
			if !seenBucket {
				return 0, fmt.Errorf("%w: record before any bucket", ErrBadSnapshot)
			}
			if bytes.Equal(bucket, bucketMeta) {
				switch {
				case bytes.Equal(k, metaApplied):
					applied = v
				case bytes.Equal(k, metaFormat):
					format = v
				}
			}
		case 'E':
			want := cr.crc.Sum32()
			var sum [4]byte
			if _, err := io.ReadFull(rd, sum[:]); err != nil {
				return 0, fmt.Errorf("%w: trailer: %w", ErrBadSnapshot, err)
			}
			if got := binary.BigEndian.Uint32(sum[:]); got != want {
				return 0, fmt.Errorf("%w: checksum %08x, computed %08x", ErrBadSnapshot, got, want)
			}
			if got := readU64(applied); got != index {
				return 0, fmt.Errorf("%w: state records index %d, header says %d", ErrBadSnapshot, got, index)
			}
			if len(format) != 4 || binary.BigEndian.Uint32(format) != storageFormat {
				return 0, fmt.Errorf("%w: storage format %x, this build reads %d", ErrBadSnapshot, format, storageFormat)
			}
			return index, nil
		default:
			return 0, fmt.Errorf("%w: unknown record tag %q", ErrBadSnapshot, tag)
		}
	}
}

// shaReader hashes, and counts, the bytes its callers consume.
type shaReader struct {
	r *bufio.Reader
	h hash.Hash
	n int64
}

func (s *shaReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.h.Write(p[:n])
	s.n += int64(n)
	return n, err
}

func (s *shaReader) ReadByte() (byte, error) {
	b, err := s.r.ReadByte()
	if err == nil {
		s.h.Write([]byte{b})
		s.n++
	}
	return b, err
}
