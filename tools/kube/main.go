// Command ddbbridge-kube runs a real Kubernetes control plane for ddb-bridge's tests and demo in ONE
// process: an embedded etcd, kube-apiserver, and the garbage-collector and namespace controllers of
// kube-controller-manager. Everything listens on 127.0.0.1; credentials are generated fresh into the data
// folder and a kubeconfig for an admin user is written where asked. SIGTERM or SIGINT stops it.
//
// Arguments after `--` are passed to kube-apiserver unchanged.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

type settings struct {
	dataDir          string
	kubeconfig       string
	securePort       int
	etcdClientPort   int
	etcdPeerPort     int
	serviceRange     string
	controllers      bool
	controllerConfig controllerOptions
	apiserverExtra   []string
}

func parseSettings(arguments []string) (*settings, error) {
	s := &settings{}
	flags := flag.NewFlagSet("ddbbridge-kube", flag.ContinueOnError)
	flags.StringVar(&s.dataDir, "data-dir", "", "folder for etcd data and generated credentials (required)")
	flags.StringVar(&s.kubeconfig, "kubeconfig", "", "where to write the admin kubeconfig (default <data-dir>/kubeconfig)")
	flags.IntVar(&s.securePort, "secure-port", 6443, "kube-apiserver HTTPS port on 127.0.0.1")
	flags.IntVar(&s.etcdClientPort, "etcd-client-port", 2379, "embedded etcd client port on 127.0.0.1")
	flags.IntVar(&s.etcdPeerPort, "etcd-peer-port", 2380, "embedded etcd peer port on 127.0.0.1")
	flags.StringVar(&s.serviceRange, "service-cluster-ip-range", "10.0.0.0/24", "service IP range")
	flags.BoolVar(&s.controllers, "controllers", true, "run the garbage-collector and namespace controllers")
	flags.DurationVar(&s.controllerConfig.gcSyncPeriod, "gc-sync-period", 5*time.Second,
		"how often the garbage collector rediscovers resource types")
	if err := flags.Parse(arguments); err != nil {
		return nil, err
	}
	if s.dataDir == "" {
		return nil, fmt.Errorf("--data-dir is required")
	}
	s.apiserverExtra = flags.Args()
	if s.kubeconfig == "" {
		s.kubeconfig = filepath.Join(s.dataDir, "kubeconfig")
	}
	s.controllerConfig.informerResync = 10 * time.Minute
	s.controllerConfig.gcWorkers = 4
	s.controllerConfig.namespaceWorkers = 2
	return s, nil
}

// firstServiceIP is the address the apiserver gives the `kubernetes` service: the range's first host.
func firstServiceIP(cidr string) (net.IP, error) {
	_, network, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, err
	}
	ip := make(net.IP, len(network.IP))
	copy(ip, network.IP)
	ip[len(ip)-1]++
	return ip, nil
}

func serverURL(port int) string {
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func writeKubeconfig(path string, server string, creds *credentials) error {
	config := clientcmdapi.NewConfig()
	config.Clusters["ddbbridge"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: creds.caCertPEM}
	config.AuthInfos[adminUser] = &clientcmdapi.AuthInfo{Token: creds.adminToken}
	config.Contexts["ddbbridge"] = &clientcmdapi.Context{Cluster: "ddbbridge", AuthInfo: adminUser, Namespace: "default"}
	config.CurrentContext = "ddbbridge"
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	// WriteToFile writes with mode 0600: the file holds the admin token.
	return clientcmd.WriteToFile(*config, path)
}

func apiserverArguments(s *settings, creds *credentials, pkiDir string) []string {
	server := serverURL(s.securePort)
	etcdURL := loopbackURL(s.etcdClientPort)
	etcdServers := etcdURL.String()
	arguments := []string{
		"--etcd-servers=" + etcdServers,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(s.securePort),
		"--cert-dir=" + pkiDir,
		"--tls-cert-file=" + creds.servingCert,
		"--tls-private-key-file=" + creds.servingKey,
		"--client-ca-file=" + creds.caCertFile,
		"--service-cluster-ip-range=" + s.serviceRange,
		"--service-account-issuer=" + server,
		"--service-account-key-file=" + creds.serviceAccount,
		"--service-account-signing-key-file=" + creds.serviceAccount,
		"--authorization-mode=RBAC",
		"--token-auth-file=" + creds.tokenFile,
		// No kubelet or pods here: the ServiceAccount admission plugin would only demand token volumes.
		"--disable-admission-plugins=ServiceAccount",
		// Endpoints may not point at loopback; the reconciler would log a failure every few seconds.
		"--endpoint-reconciler-type=none",
		// One client at a time: fairness queues only cost CPU on a two-core machine.
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	}
	return append(arguments, s.apiserverExtra...)
}

func run() int {
	s, err := parseSettings(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	pkiDir := filepath.Join(s.dataDir, "pki")
	serviceIP, err := firstServiceIP(s.serviceRange)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad --service-cluster-ip-range:", err)
		return 2
	}
	creds, err := generateCredentials(pkiDir, serviceIP)
	if err != nil {
		fmt.Fprintln(os.Stderr, "generate credentials:", err)
		return 1
	}
	server := serverURL(s.securePort)
	if err := writeKubeconfig(s.kubeconfig, server, creds); err != nil {
		fmt.Fprintln(os.Stderr, "write kubeconfig:", err)
		return 1
	}

	etcd, err := startEtcd(filepath.Join(s.dataDir, "etcd"), s.etcdClientPort, s.etcdPeerPort)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer etcd.Close()

	// The command owns the process's signal handling: its context ends on SIGTERM/SIGINT, which stops
	// the apiserver gracefully and, through the same context, the controllers.
	command := app.NewAPIServerCommand()
	command.SetArgs(apiserverArguments(s, creds, pkiDir))
	ctx := command.Context()

	if s.controllers {
		config := &rest.Config{
			Host:            server,
			BearerToken:     creds.adminToken,
			TLSClientConfig: rest.TLSClientConfig{CAData: creds.caCertPEM},
			QPS:             50,
			Burst:           100,
		}
		go func() {
			if err := runControllers(ctx, config, s.controllerConfig); err != nil && ctx.Err() == nil {
				// A cluster that silently lacks garbage collection would fail tests in confusing ways.
				klog.ErrorS(err, "controllers failed; stopping")
				etcd.Close()
				klog.FlushAndExit(klog.ExitFlushTimeout, 1)
			}
		}()
	}

	if err := command.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "kube-apiserver:", err)
		return 1
	}
	return 0
}

func main() {
	os.Exit(run())
}
