"""Kubernetes Gateway API (gateway.networking.k8s.io): GatewayClass, Gateway and HTTPRoute documents are
checked like the Istio kinds, converted into the Istio Gateway + VirtualService model the translator serves
(as istiod's pilot/pkg/config/kube/gateway/conversion.go does), and given the status Kubernetes would show.

Kept free of imports: xds.sources.kinds reads xds.gatewayapi.kinds while the model is being imported.
"""
