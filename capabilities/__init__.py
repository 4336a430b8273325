"""Mecha capability service: the Dapr API (HTTP 3500 / gRPC 50001) behind Envoy, on swappable components.

Data flow: listener (Envoy) -> api/ (HTTP, gRPC) -> blocks/<block> -> components/<block>/<backend>.
"""
