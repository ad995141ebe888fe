package main

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/controller-manager/pkg/informerfactory"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/controller/garbagecollector"
	"k8s.io/kubernetes/pkg/controller/namespace"
)

// controllerOptions are the few knobs of the two controllers we embed. Resync is rare (informers are
// event driven); the garbage collector's discovery sync is short so a CRD created by a test is
// collectable within seconds, where kube-controller-manager waits 30 s.
type controllerOptions struct {
	gcSyncPeriod     time.Duration
	informerResync   time.Duration
	gcWorkers        int
	namespaceWorkers int
}

func waitForAPIServer(ctx context.Context, client kubernetes.Interface) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true,
		func(ctx context.Context) (bool, error) {
			body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			return err == nil && string(body) == "ok", nil
		})
}

// runControllers starts the garbage collector (ownerReferences, cascading deletion) and the namespace
// controller (a deleted namespace empties and disappears) the way kube-controller-manager wires them,
// authenticated as the cluster admin. It returns once they are running; they stop with ctx.
func runControllers(ctx context.Context, config *rest.Config, options controllerOptions) error {
	logger := klog.FromContext(ctx)
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	metadataClient, err := metadata.NewForConfig(config)
	if err != nil {
		return err
	}
	if err := waitForAPIServer(ctx, client); err != nil {
		return fmt.Errorf("apiserver never became ready for the controllers: %w", err)
	}

	typedInformers := informers.NewSharedInformerFactory(client, options.informerResync)
	metadataInformers := metadatainformer.NewSharedInformerFactory(metadataClient, options.informerResync)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery()))
	informersStarted := make(chan struct{})

	collector, err := garbagecollector.NewGarbageCollector(
		ctx,
		client,
		metadataClient,
		mapper,
		garbagecollector.DefaultIgnoredResources(),
		informerfactory.NewInformerFactory(typedInformers, metadataInformers),
		informersStarted,
	)
	if err != nil {
		return fmt.Errorf("create garbage collector: %w", err)
	}
	namespaces := namespace.NewNamespaceController(
		ctx,
		client,
		metadataClient,
		client.Discovery().ServerPreferredNamespacedResources,
		typedInformers.Core().V1().Namespaces(),
		options.informerResync,
		v1.FinalizerKubernetes,
	)

	go collector.Run(ctx, options.gcWorkers, options.gcSyncPeriod)
	go collector.Sync(ctx, client.Discovery(), options.gcSyncPeriod)
	go namespaces.Run(ctx, options.namespaceWorkers)
	// The deferred mapper caches discovery; resetting it lets new CRDs resolve.
	go wait.Until(mapper.Reset, options.gcSyncPeriod, ctx.Done())

	typedInformers.Start(ctx.Done())
	metadataInformers.Start(ctx.Done())
	close(informersStarted)
	logger.Info("garbage collector and namespace controller running")
	return nil
}
