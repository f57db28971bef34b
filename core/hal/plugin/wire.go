package plugin

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/otaport/otaport/core/hal"
	halpb "github.com/otaport/otaport/core/hal/plugin/proto"
)

// grpcCode maps a port error code to the gRPC status code closest in
// meaning, so that a generic gRPC client (or a log line) still tells the
// kind of failure; the exact hal.Code travels in a status detail.
func grpcCode(c hal.Code) codes.Code {
	switch c {
	case hal.CodeOutOfBounds:
		return codes.OutOfRange
	case hal.CodeMisaligned, hal.CodeInvalid:
		return codes.InvalidArgument
	case hal.CodeNotErased:
		return codes.FailedPrecondition
	case hal.CodeFlash:
		return codes.DataLoss
	case hal.CodeUnsupported:
		return codes.Unimplemented
	case hal.CodeBusy:
		return codes.Aborted
	case hal.CodeNoImage:
		return codes.NotFound
	}
	return codes.Unknown
}

// errorToPB turns an error of the port into its wire form; nil stays nil.
// The message is the whole error string, so the host sees what the port
// would have said in-process.
func errorToPB(err error) *halpb.Error {
	if err == nil {
		return nil
	}
	// proto3 strings must be UTF-8: a port that puts raw bytes in a message
	// must not lose its error code over it.
	return &halpb.Error{Code: halpb.Code(hal.CodeOf(err)), Message: strings.ToValidUTF8(err.Error(), "\uFFFD")}
}

// errorFromPB is the host side of errorToPB: an *Error with the port's code
// and message, so errors.Is(err, ErrMisaligned) and CodeOf work.
func errorFromPB(e *halpb.Error) error {
	if e == nil {
		return nil
	}
	return &hal.Error{Code: hal.Code(e.GetCode()), Msg: e.GetMessage()}
}

// toStatus is the server side of a unary call's error: a gRPC status with the
// port's Error as detail. Context errors keep their gRPC meaning so the host
// reports a deadline as a deadline.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	pe := errorToPB(err)
	st := status.New(grpcCode(hal.CodeOf(err)), pe.Message)
	if withDetail, derr := st.WithDetails(pe); derr == nil {
		st = withDetail
	}
	return st.Err()
}

// fromStatus recovers the port's *Error from a gRPC status carrying one.
// ok is false when err is not a port error (a transport failure, a
// deadline), which the caller reports in its own words.
func fromStatus(err error) (perr error, ok bool) {
	if err == nil {
		return nil, false
	}
	st, isStatus := status.FromError(err)
	if !isStatus {
		return nil, false
	}
	for _, d := range st.Details() {
		if pe, isPE := d.(*halpb.Error); isPE {
			return errorFromPB(pe), true
		}
	}
	// A plugin built before a method existed answers Unimplemented with no
	// detail: to the host that is an unsupported capability.
	if st.Code() == codes.Unimplemented {
		return &hal.Error{Code: hal.CodeUnsupported, Msg: st.Message()}, true
	}
	return nil, false
}

func layoutToPB(l hal.Layout) *halpb.Layout {
	g := l.Flash
	pg := &halpb.FlashGeometry{
		Base:       g.Base,
		Size:       g.Size,
		WriteAlign: g.WriteAlign,
		EraseValue: uint32(g.EraseValue),
	}
	for _, s := range g.Sectors {
		pg.Sectors = append(pg.Sectors, &halpb.SectorRun{Count: int64(s.Count), Size: s.Size})
	}
	pl := &halpb.Layout{
		Board:          l.Board,
		Vendor:         l.Vendor,
		Soc:            l.SoC,
		Scheme:         string(l.Scheme),
		Flash:          pg,
		Signature:      l.Signature,
		BootAttempts:   int64(l.BootAttempts),
		Bootloader:     l.Bootloader.Name,
		BootloaderMode: l.Bootloader.Mode,
	}
	for _, p := range l.Partitions {
		pl.Partitions = append(pl.Partitions, &halpb.Partition{Name: p.Name, Offset: p.Offset, Size: p.Size})
	}
	return pl
}

func layoutFromPB(pl *halpb.Layout) hal.Layout {
	pg := pl.GetFlash()
	l := hal.Layout{
		Board:     pl.GetBoard(),
		Vendor:    pl.GetVendor(),
		SoC:       pl.GetSoc(),
		Scheme:    hal.Scheme(pl.GetScheme()),
		Signature: pl.GetSignature(),
		Flash: hal.FlashGeometry{
			Base:       pg.GetBase(),
			Size:       pg.GetSize(),
			WriteAlign: pg.GetWriteAlign(),
			EraseValue: byte(pg.GetEraseValue()),
		},
		BootAttempts: int(pl.GetBootAttempts()),
		Bootloader:   hal.Bootloader{Name: pl.GetBootloader(), Mode: pl.GetBootloaderMode()},
	}
	for _, s := range pg.GetSectors() {
		l.Flash.Sectors = append(l.Flash.Sectors, hal.SectorRun{Count: int(s.GetCount()), Size: s.GetSize()})
	}
	for _, p := range pl.GetPartitions() {
		l.Partitions = append(l.Partitions, hal.Partition{Name: p.GetName(), Offset: p.GetOffset(), Size: p.GetSize()})
	}
	return l
}

func infoToPB(in hal.Info) *halpb.Info {
	pb := &halpb.Info{
		Layout:       layoutToPB(in.Layout),
		Boot:         &halpb.BootState{Trial: in.Boot.Trial, BootCount: int64(in.Boot.BootCount), SecurityCounter: in.Boot.SecurityCounter},
		Capabilities: in.Capabilities,
	}
	for _, s := range in.Boot.Slots {
		pb.Boot.Slots = append(pb.Boot.Slots, &halpb.SlotState{
			Name: s.Name, Version: s.Version, Bootable: s.Bootable,
			Active: s.Active, Pending: s.Pending, Confirmed: s.Confirmed,
		})
	}
	return pb
}

func infoFromPB(pb *halpb.Info) hal.Info {
	in := hal.Info{
		Layout:       layoutFromPB(pb.GetLayout()),
		Boot:         hal.BootState{Trial: pb.GetBoot().GetTrial(), BootCount: int(pb.GetBoot().GetBootCount()), SecurityCounter: pb.GetBoot().GetSecurityCounter()},
		Capabilities: pb.GetCapabilities(),
	}
	for _, s := range pb.GetBoot().GetSlots() {
		in.Boot.Slots = append(in.Boot.Slots, hal.SlotState{
			Name: s.GetName(), Version: s.GetVersion(), Bootable: s.GetBootable(),
			Active: s.GetActive(), Pending: s.GetPending(), Confirmed: s.GetConfirmed(),
		})
	}
	return in
}
