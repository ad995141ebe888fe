"""Development and test infrastructure: emulated regions, delay proxy, local Lambda runner, local
Kubernetes control plane. Product code (`ddbbridge`, `ddbbridge_lambdas`) never imports this package."""
