"""RequestAuthentication -> envoy.filters.http.jwt_authn + the `istio_authn` metadata filter.

As istiod (istio-mapping.md §7): every jwtRule of the policies selecting a workload, sorted by issuer, is
provider `origins-<i>`; a request with no token passes (AuthorizationPolicy decides), a bad token gets 401.
istiod's own istio_authn filter is not in upstream Envoy, so a small Lua filter publishes the same dynamic
metadata (`istio_authn`: request.auth.principal = iss/sub, audiences, presenter, claims) for RBAC to match.
"""

from __future__ import annotations

from datetime import timedelta

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.extensions.filters.http.jwt_authn import v3 as jwt
from envoy_data_plane.envoy.extensions.filters.http.lua import v3 as lua
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm
from envoy_data_plane.google.protobuf import Any as AnyMsg
from envoy_data_plane.google.protobuf import Empty

from xds.model.mesh import MeshConfig
from xds.model.meta import Labels
from xds.model.security import JwtRule, SecurityPolicies, jwks_uri_target, selects
from xds.translate.envoy_core import outbound_cluster_name

JWT_FILTER = "envoy.filters.http.jwt_authn"
AUTHN_FILTER = "istio_authn"

AUTHN_LUA = """
local function as_list(v)
  if type(v) == "table" then
    local out = {}
    if v[1] ~= nil then
      for i, x in ipairs(v) do out[i] = tostring(x) end
    else
      for k, x in pairs(v) do out[k] = as_list(x) end
    end
    return out
  end
  return { tostring(v) }
end

function envoy_on_request(handle)
  local verified = handle:streamInfo():dynamicMetadata():get("envoy.filters.http.jwt_authn")
  if verified == nil then return end
  for _, payload in pairs(verified) do
    local iss, sub = payload["iss"], payload["sub"]
    if iss ~= nil and sub ~= nil then
      local meta = handle:streamInfo():dynamicMetadata()
      meta:set("istio_authn", "request.auth.principal", tostring(iss) .. "/" .. tostring(sub))
      local aud, azp = payload["aud"], payload["azp"]
      if aud ~= nil then meta:set("istio_authn", "request.auth.audiences", as_list(aud)) end
      if azp ~= nil then meta:set("istio_authn", "request.auth.presenter", tostring(azp)) end
      meta:set("istio_authn", "request.auth.claims", as_list(payload))
      return
    end
  end
end
"""


def jwt_rules_for(
    policies: SecurityPolicies, namespace: str, labels: Labels | dict[str, str]
) -> list[JwtRule]:
    rules = [
        r for p in policies.authn if selects(p.selector, p.meta.namespace, namespace, labels) for r in p.rules
    ]
    return sorted(rules, key=lambda r: r.issuer)


REMOTE_JWKS_TIMEOUT = timedelta(seconds=5)  # istiod defaults
REMOTE_JWKS_CACHE = timedelta(seconds=300)


def remote_jwks(rule: JwtRule, target: tuple[str, int]) -> jwt.RemoteJwks:
    """istiod: a jwksUri naming a mesh service is fetched by the proxy through that service's cluster."""
    host, port = target
    return jwt.RemoteJwks(
        http_uri=core.HttpUri(
            uri=rule.jwks_uri, cluster=outbound_cluster_name(port, "", host), timeout=REMOTE_JWKS_TIMEOUT
        ),
        cache_duration=REMOTE_JWKS_CACHE,
    )


def provider(rule: JwtRule, target: tuple[str, int] | None = None) -> jwt.JwtProvider:
    """target: the mesh service (host, port) that rule.jwks_uri names, if any."""
    return jwt.JwtProvider(
        issuer=rule.issuer,
        audiences=list(rule.audiences),
        local_jwks=core.DataSource(inline_string=rule.jwks) if target is None else None,
        remote_jwks=remote_jwks(rule, target) if target is not None else None,
        forward=rule.forward_original_token,
        from_headers=[jwt.JwtHeader(name=n, value_prefix=p) for n, p in rule.from_headers],
        from_params=list(rule.from_params),
        from_cookies=list(rule.from_cookies),
        forward_payload_header=rule.output_payload_to_header,
        payload_in_metadata=rule.issuer,
        normalize_payload_in_metadata=jwt.JwtProviderNormalizePayload(
            space_delimited_claims=["scope", "permission"]
        ),
        claim_to_headers=[
            jwt.JwtClaimToHeader(header_name=h, claim_name=c) for h, c in rule.output_claim_to_headers
        ],
    )


def _requirement(names: list[str]) -> jwt.JwtRequirement:
    allow_missing = jwt.JwtRequirement(allow_missing=Empty())
    if len(names) == 1:
        reqs = [jwt.JwtRequirement(provider_name=names[0]), allow_missing]
        return jwt.JwtRequirement(requires_any=jwt.JwtRequirementOrList(requirements=reqs))
    # istiod: any valid token passes; each present token must be valid (requires_all of any(Pi, missing))
    every = [
        jwt.JwtRequirement(
            requires_any=jwt.JwtRequirementOrList(
                requirements=[jwt.JwtRequirement(provider_name=n), allow_missing]
            )
        )
        for n in names
    ]
    options = [jwt.JwtRequirement(provider_name=n) for n in names]
    options.append(jwt.JwtRequirement(requires_all=jwt.JwtRequirementAndList(requirements=every)))
    return jwt.JwtRequirement(requires_any=jwt.JwtRequirementOrList(requirements=options))


def _target(rule: JwtRule, config: MeshConfig | None, namespace: str) -> tuple[str, int] | None:
    if config is None or rule.jwks or not rule.jwks_uri:
        return None
    return jwks_uri_target(rule.jwks_uri, config.service_by_host, namespace)


def jwt_authentication(
    rules: list[JwtRule], config: MeshConfig | None = None, namespace: str = ""
) -> jwt.JwtAuthentication:
    names = [f"origins-{i}" for i in range(len(rules))]
    return jwt.JwtAuthentication(
        providers={n: provider(r, _target(r, config, namespace)) for n, r in zip(names, rules, strict=True)},
        rules=[jwt.RequirementRule(match=rte.RouteMatch(prefix="/"), requires=_requirement(names))],
        bypass_cors_preflight=True,
    )


def authn_http_filters(
    policies: SecurityPolicies,
    namespace: str,
    labels: Labels | dict[str, str],
    config: MeshConfig | None = None,
) -> list[hcm.HttpFilter]:
    """config: to send a jwksUri that names a mesh service through its cluster (else inlined JWKS)."""
    rules = jwt_rules_for(policies, namespace, labels)
    if not rules:
        return []
    authn = jwt_authentication(rules, config, namespace)
    return [
        hcm.HttpFilter(name=JWT_FILTER, typed_config=AnyMsg.pack(authn)),
        hcm.HttpFilter(
            name=AUTHN_FILTER,
            typed_config=AnyMsg.pack(lua.Lua(default_source_code=core.DataSource(inline_string=AUTHN_LUA))),
        ),
    ]
