package events

import toolscache "k8s.io/client-go/tools/cache"

// Handler calls upsert for added and updated objects of type T and remove for deleted ones,
// including those the informer only saw as a tombstone.
func Handler[T any](upsert, remove func(T)) toolscache.ResourceEventHandler {
	on := func(obj any, deleted bool) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj, deleted = d.Obj, true
		}
		o, ok := obj.(T)
		if !ok {
			return
		}
		if deleted {
			remove(o)
			return
		}
		upsert(o)
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { on(obj, false) },
		UpdateFunc: func(_, obj any) { on(obj, false) },
		DeleteFunc: func(obj any) { on(obj, true) },
	}
}
