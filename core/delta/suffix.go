package delta

import (
	"bytes"
	"encoding/binary"
	"index/suffixarray"
	"sort"
)

// suffixArray returns the sorted suffix array of data. index/suffixarray
// builds it in linear time (SA-IS) but exposes only Lookup, not the order bsdiff's
// longest-match search walks; its serialized form is the array itself, so
// read it back from there. The result is checked, and a plain sort takes
// over if the serialized form ever changes.
func suffixArray(data []byte) []int32 {
	if sa, ok := suffixArrayFromIndex(data); ok {
		return sa
	}
	sa := make([]int32, len(data))
	for i := range sa {
		sa[i] = int32(i)
	}
	sort.Slice(sa, func(i, j int) bool { return bytes.Compare(data[sa[i]:], data[sa[j]:]) < 0 })
	return sa
}

func suffixArrayFromIndex(data []byte) ([]int32, bool) {
	var buf bytes.Buffer
	if err := suffixarray.New(data).Write(&buf); err != nil {
		return nil, false
	}
	b := buf.Bytes()
	// Layout: a 10-byte varint length, the data, then chunks of a 10-byte
	// varint chunk size (header included) followed by uvarints.
	const hdr = binary.MaxVarintLen64
	if len(b) < hdr {
		return nil, false
	}
	n, _ := binary.Varint(b[:hdr])
	if n != int64(len(data)) || len(b) < hdr+len(data) {
		return nil, false
	}
	b = b[hdr+len(data):]
	sa := make([]int32, 0, len(data))
	for len(b) > 0 {
		if len(b) < hdr {
			return nil, false
		}
		size, _ := binary.Varint(b[:hdr])
		if size < hdr || size > int64(len(b)) {
			return nil, false
		}
		chunk := b[hdr:size]
		for len(chunk) > 0 {
			v, k := binary.Uvarint(chunk)
			if k <= 0 || v >= uint64(len(data)) {
				return nil, false
			}
			sa = append(sa, int32(v))
			chunk = chunk[k:]
		}
		b = b[size:]
	}
	if len(sa) != len(data) {
		return nil, false
	}
	seen := make([]bool, len(data))
	for i, p := range sa {
		if seen[p] || i > 0 && i%97 == 0 && bytes.Compare(data[sa[i-1]:], data[p:]) >= 0 {
			return nil, false
		}
		seen[p] = true
	}
	return sa, true
}
