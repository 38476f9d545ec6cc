package testutil

import (
	"fmt"
	"net/netip"
	"reflect"
	"time"
)

// Fill sets every exported field reachable from ptr (a pointer to a
// struct) to a distinct non-zero value: addresses, durations (any integer
// type named Duration: whole seconds plus 1.5ms, to catch rounding), times,
// strings naming their path, two elements per slice, one per map. Tests of
// encodings use it to see that no field is lost.
func Fill(ptr any) {
	f := &filler{}
	f.fill(reflect.ValueOf(ptr).Elem(), "")
}

// filler sets every exported field to a distinct non-zero value.
type filler struct{ n int }

var (
	addrType     = reflect.TypeFor[netip.Addr]()
	addrPortType = reflect.TypeFor[netip.AddrPort]()
	timeType     = reflect.TypeFor[time.Time]()
)

func (f *filler) fill(v reflect.Value, path string) {
	f.n++
	switch v.Type() {
	case addrType:
		if f.n%2 == 0 {
			v.Set(reflect.ValueOf(netip.AddrFrom4([4]byte{192, 0, 2, byte(f.n)})))
		} else {
			v.Set(reflect.ValueOf(netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", f.n))))
		}
		return
	case addrPortType:
		v.Set(reflect.ValueOf(netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(f.n)}), uint16(f.n))))
		return
	case timeType:
		v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, f.n, 0, time.UTC)))
		return
	}
	if v.Type().Name() == "Duration" && v.Kind() == reflect.Int64 {
		v.SetInt(int64(time.Duration(f.n)*time.Second + 1500*time.Microsecond))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("%s-%d", path, f.n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(f.n % 100))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(f.n % 200))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(f.n) + 0.5)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		f.fill(p.Elem(), path)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			f.fill(s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		e := reflect.New(v.Type().Elem()).Elem()
		f.fill(k, path+".key")
		f.fill(e, path+".value")
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if sf := v.Type().Field(i); sf.IsExported() {
				f.fill(v.Field(i), path+"."+sf.Name)
			}
		}
	case reflect.Array:
		for i := range v.Len() {
			f.fill(v.Index(i), path)
		}
	default:
		panic(fmt.Sprintf("filler: %s has unsupported kind %s", path, v.Kind()))
	}
}
