package server

import (
	"context"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage/names"
	"k8s.io/apiserver/pkg/util/dryrun"
	"k8s.io/utils/keymutex"
	"k8s.io/utils/ptr"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/validation"
)

// claimer starts Operations on Servers. It claims the Server for the new
// Operation (status.lastOperation, written with optimistic concurrency
// after checking the previous Operation is done), creates that Operation
// owned by the Server, and returns it. Every way an Operation comes to be
// goes through it: servers/NAME/repave, servers/NAME/reboot and a plain
// create of an Operation (the original Stargate's way), so the
// controller can run an Operation only when its Server's claim names it.
//
// Between the claim and the creation the claimed Operation does not exist
// yet, and a missing Operation counts as done (it may have been deleted,
// or this process may have died before creating it). So the claim and the
// creation run under a lock per Server: two requests racing through one
// stargate-apiserver cannot both win. Across replicas sharing an external
// etcd that window (the time to create one object) remains.
type claimer struct {
	locks      keymutex.KeyMutex
	servers    rest.Getter
	status     rest.Updater
	profiles   rest.Getter
	operations Operations
}

// start claims Server name for the Operation build makes from it and
// creates that Operation. build sees the Server as read under the lock.
func (c *claimer) start(ctx context.Context, name string, build func(*stargate.Server) (*stargate.Operation, error), options *metav1.CreateOptions) (runtime.Object, error) {
	key := genericapirequest.NamespaceValue(ctx) + "/" + name
	c.locks.LockKey(key)
	defer func() { _ = c.locks.UnlockKey(key) }()

	serverObj, err := c.servers.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	server := serverObj.(*stargate.Server)
	if server.DeletionTimestamp != nil {
		return nil, busy(name, fmt.Sprintf("server %q is being deleted; no Operation can start on it", name))
	}
	op, err := build(server)
	if err != nil {
		return nil, err
	}
	if op.Name == "" {
		op.Name = names.SimpleNameGenerator.GenerateName(op.GenerateName)
	}
	op.Namespace = server.Namespace
	if op.Labels == nil {
		op.Labels = map[string]string{}
	}
	op.Labels[stargate.LabelServer] = name
	if len(op.OwnerReferences) == 0 {
		op.OwnerReferences = []metav1.OwnerReference{{
			APIVersion:         "stargate.io/v1alpha1",
			Kind:               "Server",
			Name:               server.Name,
			UID:                server.UID,
			Controller:         ptr.To(true),
			BlockOwnerDeletion: ptr.To(true),
		}}
	}

	if dryrun.IsDryRun(options.DryRun) {
		if err := c.checkIdle(ctx, server); err != nil {
			return nil, err
		}
		return c.operations.Create(ctx, op, rest.ValidateAllObjectFunc, &metav1.CreateOptions{DryRun: options.DryRun})
	}

	previous, err := c.claim(ctx, server, op.Name)
	if err != nil {
		return nil, err
	}
	created, err := c.operations.Create(ctx, op, rest.ValidateAllObjectFunc, &metav1.CreateOptions{FieldManager: options.FieldManager})
	if err != nil {
		// Give the server back so the next request is not refused for an
		// Operation that never existed.
		if _, uerr := c.setLastOperation(ctx, server, op.Name, previous); uerr != nil {
			err = fmt.Errorf("%w (and releasing the server failed: %v)", err, uerr)
		}
		return nil, err
	}
	return created, nil
}

// profileFor resolves the profile of an Operation: the request's, else
// the Server's; kind and path name the request for errors.
func (c *claimer) profileFor(ctx context.Context, server *stargate.Server, override *stargate.LocalObjectReference, kind string) (*stargate.LocalObjectReference, error) {
	profileRef := server.Spec.ProvisioningProfileRef
	profilePath := field.NewPath("spec", "provisioningProfileRef", "name")
	if override != nil {
		profileRef, profilePath = override, field.NewPath("provisioningProfileRef", "name")
	}
	if profileRef == nil {
		return nil, apierrors.NewInvalid(stargate.Kind(kind), server.Name, field.ErrorList{
			field.Required(profilePath, "the server names no ProvisioningProfile; name one in the request or in spec.provisioningProfileRef")})
	}
	if _, err := c.profiles.Get(ctx, profileRef.Name, &metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, apierrors.NewInvalid(stargate.Kind(kind), server.Name, field.ErrorList{
				field.NotFound(profilePath, profileRef.Name)})
		}
		return nil, err
	}
	return profileRef, nil
}

// RepaveREST serves POST servers/NAME/repave: it starts a repave through
// the claimer and returns its Operation.
type RepaveREST struct {
	*claimer
}

var _ rest.NamedCreater = &RepaveREST{}

// New returns an empty RepaveRequest: the body of the call.
func (r *RepaveREST) New() runtime.Object { return &stargate.RepaveRequest{} }

// Destroy is a no-op: the stores it uses own the storage.
func (r *RepaveREST) Destroy() {}

// Create starts a repave of the named Server and returns its Operation.
func (r *RepaveREST) Create(ctx context.Context, name string, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	req, ok := obj.(*stargate.RepaveRequest)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected a RepaveRequest, got %T", obj))
	}
	errs := validation.ValidateRepaveRequest(req)
	errs = append(errs, validateRequestLabels(req.Labels)...)
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(stargate.Kind("RepaveRequest"), name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, obj); err != nil {
			return nil, err
		}
	}
	return r.start(ctx, name, func(server *stargate.Server) (*stargate.Operation, error) {
		profile, err := r.profileFor(ctx, server, req.ProvisioningProfileRef, "RepaveRequest")
		if err != nil {
			return nil, err
		}
		return &stargate.Operation{
			ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-repave-", Labels: operationLabels(req.Labels, name)},
			Spec: stargate.OperationSpec{
				ServerRef:              stargate.LocalObjectReference{Name: name},
				ProvisioningProfileRef: *profile,
				Operation:              stargate.OperationRepave,
				Reason:                 req.Reason,
				Force:                  req.Force,
				DrainTimeout:           req.DrainTimeout,
			},
		}, nil
	}, options)
}

// RebootREST serves POST servers/NAME/reboot: it starts a reboot through
// the claimer and returns its Operation. The Server's own profile gives
// the SSH credentials.
type RebootREST struct {
	*claimer
}

var _ rest.NamedCreater = &RebootREST{}

// New returns an empty RebootRequest: the body of the call.
func (r *RebootREST) New() runtime.Object { return &stargate.RebootRequest{} }

// Destroy is a no-op: the stores it uses own the storage.
func (r *RebootREST) Destroy() {}

// Create starts a reboot of the named Server and returns its Operation.
func (r *RebootREST) Create(ctx context.Context, name string, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	req, ok := obj.(*stargate.RebootRequest)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected a RebootRequest, got %T", obj))
	}
	errs := validation.ValidateRebootRequest(req)
	errs = append(errs, validateRequestLabels(req.Labels)...)
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(stargate.Kind("RebootRequest"), name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, obj); err != nil {
			return nil, err
		}
	}
	return r.start(ctx, name, func(server *stargate.Server) (*stargate.Operation, error) {
		profile, err := r.profileFor(ctx, server, nil, "RebootRequest")
		if err != nil {
			return nil, err
		}
		return &stargate.Operation{
			ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-reboot-", Labels: operationLabels(req.Labels, name)},
			Spec: stargate.OperationSpec{
				ServerRef:              stargate.LocalObjectReference{Name: name},
				ProvisioningProfileRef: *profile,
				Operation:              stargate.OperationReboot,
				Reason:                 req.Reason,
				Force:                  req.Force,
				DrainTimeout:           req.DrainTimeout,
			},
		}, nil
	}, options)
}

// OperationsREST is the storage of operations as users see it: a create
// of an Operation (kubectl create -f op.yaml, as with the original
// Stargate) claims its Server like servers/NAME/repave does, and is
// refused with 409 while another Operation holds the Server.
type OperationsREST struct {
	Creater rest.Creater
	claimer *claimer
}

// Create claims the Operation's Server and creates the Operation.
func (r *OperationsREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	op, ok := obj.(*stargate.Operation)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected an Operation, got %T", obj))
	}
	if op.Name == "" && op.GenerateName != "" {
		op.Name = names.SimpleNameGenerator.GenerateName(op.GenerateName)
	}
	if errs := validation.ValidateOperation(op); len(errs) > 0 {
		return nil, apierrors.NewInvalid(stargate.Kind("Operation"), op.Name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, obj); err != nil {
			return nil, err
		}
	}
	name := op.Spec.ServerRef.Name
	return r.claimer.start(ctx, name, func(server *stargate.Server) (*stargate.Operation, error) {
		if _, err := r.claimer.profileFor(ctx, server, &op.Spec.ProvisioningProfileRef, "Operation"); err != nil {
			return nil, err
		}
		if l := op.Labels[stargate.LabelServer]; l != "" && l != name {
			return nil, apierrors.NewInvalid(stargate.Kind("Operation"), op.Name, field.ErrorList{field.Invalid(
				field.NewPath("metadata", "labels").Key(stargate.LabelServer), l, "must name spec.serverRef.name, or be left for the server to set")})
		}
		for _, o := range op.OwnerReferences {
			if o.Kind == "Server" && o.APIVersion == "stargate.io/v1alpha1" && (o.Name != name || o.UID != server.UID) {
				return nil, apierrors.NewInvalid(stargate.Kind("Operation"), op.Name, field.ErrorList{field.Invalid(
					field.NewPath("metadata", "ownerReferences"), o.Name, "an Operation may be owned by its own Server only")})
			}
		}
		return op, nil
	}, options)
}

// validateRequestLabels checks the labels of a RepaveRequest, which the
// Operation gets (a ServerRollout marks its Operations so): valid label
// keys and values, and not stargate.io/server, which names the Server.
func validateRequestLabels(l map[string]string) field.ErrorList {
	p := field.NewPath("metadata", "labels")
	errs := metav1validation.ValidateLabels(l, p)
	if _, ok := l[stargate.LabelServer]; ok {
		errs = append(errs, field.Forbidden(p.Key(stargate.LabelServer), "is set by the server to the Server's name"))
	}
	return errs
}

// operationLabels are the request's labels and stargate.io/server.
func operationLabels(req map[string]string, server string) map[string]string {
	l := make(map[string]string, len(req)+1)
	for k, v := range req {
		l[k] = v
	}
	l[stargate.LabelServer] = server
	return l
}

// checkIdle refuses with 409 while the server's last Operation is active.
func (c *claimer) checkIdle(ctx context.Context, server *stargate.Server) error {
	if server.Status.LastOperation == "" {
		return nil
	}
	obj, err := c.operations.Get(ctx, server.Status.LastOperation, &metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	op := obj.(*stargate.Operation)
	if !op.Status.Phase.IsActive() {
		return nil
	}
	phase := op.Status.Phase
	if phase == "" {
		phase = stargate.OperationPending
	}
	return busy(server.Name, fmt.Sprintf(
		"server %q is busy: %s operation %q is still %s; wait for it to finish (kubectl get operation %s -n %s -w) or delete it",
		server.Name, op.Spec.Operation, op.Name, phase, op.Name, server.Namespace))
}

// claim records opName as the server's last Operation, after checking in
// the same optimistic-concurrency update that the previous one is done.
// It returns the previous value.
func (c *claimer) claim(ctx context.Context, server *stargate.Server, opName string) (string, error) {
	var previous string
	_, _, err := c.status.Update(ctx, server.Name, rest.DefaultUpdatedObjectInfo(nil, func(ctx context.Context, _, oldObj runtime.Object) (runtime.Object, error) {
		current := oldObj.(*stargate.Server)
		if current.UID != server.UID {
			return nil, busy(server.Name, fmt.Sprintf("server %q was deleted and recreated during the repave request; try again", server.Name))
		}
		if err := c.checkIdle(ctx, current); err != nil {
			return nil, err
		}
		previous = current.Status.LastOperation
		s := current.DeepCopy()
		s.Status.LastOperation = opName
		return s, nil
	}), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	return previous, err
}

// setLastOperation sets the server's last Operation to to, if it is still from.
func (c *claimer) setLastOperation(ctx context.Context, server *stargate.Server, from, to string) (runtime.Object, error) {
	obj, _, err := c.status.Update(ctx, server.Name, rest.DefaultUpdatedObjectInfo(nil, func(ctx context.Context, _, oldObj runtime.Object) (runtime.Object, error) {
		s := oldObj.(*stargate.Server).DeepCopy()
		if s.UID == server.UID && s.Status.LastOperation == from {
			s.Status.LastOperation = to
		}
		return s, nil
	}), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	return obj, err
}

// busy is a 409 Conflict with a message of its own: apierrors.NewConflict
// would prefix "Operation cannot be fulfilled", which reads as if it were
// about one of our Operations.
func busy(name, message string) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusConflict,
		Reason:  metav1.StatusReasonConflict,
		Message: message,
		Details: &metav1.StatusDetails{Group: stargate.GroupName, Kind: "servers", Name: name},
	}}
}
