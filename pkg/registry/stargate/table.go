package stargate

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metatable "k8s.io/apimachinery/pkg/api/meta/table"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TableConvertor renders objects of one kind as kubectl table rows: the
// columns, and a function giving the cells after NAME for one object.
type TableConvertor[T runtime.Object] struct {
	// Columns follow NAME; AGE is appended.
	Columns []metav1.TableColumnDefinition
	Cells   func(T) []interface{}
}

// ConvertToTable implements rest.TableConvertor.
func (c TableConvertor[T]) ConvertToTable(ctx context.Context, obj runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	if opt, ok := tableOptions.(*metav1.TableOptions); !ok || !opt.NoHeaders {
		table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{
			Name: "Name", Type: "string", Format: "name", Description: "Name of the object."})
		table.ColumnDefinitions = append(table.ColumnDefinitions, c.Columns...)
		table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{
			Name: "Age", Type: "date", Description: "Time since the object was created."})
	}
	fn := func(o runtime.Object, m metav1.Object, name, age string) ([]interface{}, error) {
		t, ok := o.(T)
		if !ok {
			return nil, fmt.Errorf("unexpected object %T in table", o)
		}
		cells := append([]interface{}{name}, c.Cells(t)...)
		return append(cells, age), nil
	}
	var err error
	table.Rows, err = metatable.MetaToTableRow(obj, fn)
	if err != nil {
		return nil, err
	}
	if l, err := meta.ListAccessor(obj); err == nil {
		table.ResourceVersion = l.GetResourceVersion()
		table.Continue = l.GetContinue()
		table.RemainingItemCount = l.GetRemainingItemCount()
	} else if m, err := meta.CommonAccessor(obj); err == nil {
		table.ResourceVersion = m.GetResourceVersion()
	}
	return table, nil
}

// OrNone shows an empty string as <none>, as kubectl does.
func OrNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
