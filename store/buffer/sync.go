package buffer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Why the WAL syncs Badger's files itself.
//
// With SyncWrites, Badger msyncs two files after every write: the active
// memtable's log, which holds the write, and the value log, which holds
// only values of valueThreshold bytes or more and so, for nearly every
// group, nothing new. The msync of the clean file is not free: ext4 still
// flushes the device's cache for it. BenchmarkWALAppend with one appender
// took 284-336 µs a commit that way, 201-234 µs this way (three runs of
// each, alternating, on the 2-core test machine).
//
// So the WAL opens Badger without SyncWrites, and after each commit the
// syncer fdatasyncs what the commit wrote to (what msync(MS_SYNC) does to
// a mapped file): the memtable's log, and the value logs when a value went
// there. Badger writes a commit into one memtable, whose log it names
// <fid>.mem, the fids counting up by one; a new one is synced with its
// directory. Its value logs are <fid>.vlog. TestSyncedFilesHoldEveryWrite
// checks these assumptions on each write it makes, so that a Badger that
// lays out its files otherwise fails the tests rather than lose writes.
type syncer struct {
	dir     string
	mem     *os.File // the active memtable's log
	memFid  int
	vlogFid int // the highest value log synced
	// sync is fdatasync; tests record what it syncs.
	sync func(*os.File) error
}

const (
	memExt  = ".mem"
	vlogExt = ".vlog"
)

func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// newSyncer finds the active memtable's log in dir, just after Badger
// opened it: the one with the highest fid.
func newSyncer(dir string) (*syncer, error) {
	s := &syncer{dir: dir, memFid: -1, vlogFid: -1, sync: fdatasync}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if fid, ok := fileID(e.Name(), memExt); ok && fid > s.memFid {
			s.memFid = fid
		}
		if fid, ok := fileID(e.Name(), vlogExt); ok && fid > s.vlogFid {
			s.vlogFid = fid
		}
	}
	if s.memFid < 0 {
		return nil, fmt.Errorf("wal: no Badger memtable log (*%s) in %s: this Badger lays out its files otherwise", memExt, dir)
	}
	if s.mem, err = os.OpenFile(s.memPath(s.memFid), os.O_RDWR, 0); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	return s, nil
}

// fileID parses Badger's file names: digits, then ext.
func fileID(name, ext string) (int, bool) {
	digits, ok := strings.CutSuffix(name, ext)
	if !ok || digits == "" {
		return 0, false
	}
	fid, err := strconv.Atoi(digits)
	return fid, err == nil && fid >= 0
}

// memPath is Badger's name for a memtable's log (mtFilePath).
func (s *syncer) memPath(fid int) string {
	return filepath.Join(s.dir, fmt.Sprintf("%05d%s", fid, memExt))
}

// synced makes the last commit durable; vlog says it set a value of
// valueThreshold bytes or more.
func (s *syncer) synced(vlog bool) error {
	if vlog {
		if err := s.syncValueLogs(); err != nil {
			return err
		}
	}
	for {
		if err := s.sync(s.mem); err != nil {
			return fmt.Errorf("wal: sync %s: %w", s.mem.Name(), err)
		}
		// Badger may have moved on to the next memtable for this commit.
		next, err := os.OpenFile(s.memPath(s.memFid+1), os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		if err := s.syncDir(); err != nil {
			next.Close()
			return err
		}
		_ = s.mem.Close()
		s.mem, s.memFid = next, s.memFid+1
	}
}

// syncValueLogs syncs the value logs from the highest one synced before:
// a commit that fills one goes on in the next.
func (s *syncer) syncValueLogs() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	high := s.vlogFid
	for _, e := range ents {
		fid, ok := fileID(e.Name(), vlogExt)
		if !ok || fid < s.vlogFid {
			continue
		}
		if err := s.syncFile(e.Name()); err != nil {
			return err
		}
		high = max(high, fid)
	}
	if high == s.vlogFid {
		return nil
	}
	s.vlogFid = high
	return s.syncDir()
}

// syncAll syncs every memtable and value log, and the directory, after
// a value-log GC pass. It reads only dir and sync, which do not change
// once the WAL is open, so it may run beside the writer: a sync more is
// harmless.
func (s *syncer) syncAll() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), memExt) && !strings.HasSuffix(e.Name(), vlogExt) {
			continue
		}
		if err := s.syncFile(e.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err // a memtable flushed meanwhile is gone, and fine
		}
	}
	return s.syncDir()
}

// syncFile syncs the file name of dir.
func (s *syncer) syncFile(name string) error {
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	if err := s.sync(f); err != nil {
		return fmt.Errorf("wal: sync %s: %w", name, err)
	}
	return nil
}

func (s *syncer) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	defer d.Close()
	if err := s.sync(d); err != nil {
		return fmt.Errorf("wal: sync directory %s: %w", s.dir, err)
	}
	return nil
}

func (s *syncer) close() error { return s.mem.Close() }
