"""The rest of an http route's Envoy form, as istiod's route.go builds it (istio-mapping.md §1.3): fault and
CORS per-route filter configs, header operations, redirect, direct response, mirrors and consistent-hash
hash policies."""

from __future__ import annotations

from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.extensions.filters.common.fault import v3 as common_fault
from envoy_data_plane.envoy.extensions.filters.http.cors import v3 as cors
from envoy_data_plane.envoy.extensions.filters.http.fault import v3 as fault
from envoy_data_plane.envoy.type import v3 as typ
from envoy_data_plane.google.protobuf import Any as AnyMsg

from xds.model.checks import GRPC_STATUS
from xds.model.traffic import ConsistentHash, Cors, DirectResponse, Fault, HeaderOps, Percent, Redirect
from xds.translate.matchers import string_matcher

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
MAX_DIRECT_RESPONSE_BODY = 1048576  # istiod sets max_direct_response_body_size_bytes to 1 MiB

_REDIRECT_CODES = {
    0: rte.RedirectActionRedirectResponseCode.MOVED_PERMANENTLY,
    301: rte.RedirectActionRedirectResponseCode.MOVED_PERMANENTLY,
    302: rte.RedirectActionRedirectResponseCode.FOUND,
    303: rte.RedirectActionRedirectResponseCode.SEE_OTHER,
    307: rte.RedirectActionRedirectResponseCode.TEMPORARY_REDIRECT,
    308: rte.RedirectActionRedirectResponseCode.PERMANENT_REDIRECT,
}
_HOST_HEADERS = (":authority", "host")


def fractional(p: Percent) -> typ.FractionalPercent:
    denominator = (
        typ.FractionalPercentDenominatorType.MILLION
        if p.per_million
        else typ.FractionalPercentDenominatorType.HUNDRED
    )
    return typ.FractionalPercent(numerator=p.numerator, denominator=denominator)


def fault_config(f: Fault) -> fault.HttpFault | None:
    """istiod TranslateFault; None when both parts were dropped (no per-filter config then)."""
    out = fault.HttpFault()
    if f.delay is not None:
        out.delay = common_fault.FaultDelay(
            fixed_delay=f.delay,
            percentage=fractional(f.delay_percent) if f.delay_percent is not None else None,
        )
    if f.abort_http_status is not None or f.abort_grpc_status is not None:
        out.abort = fault.FaultAbort(
            http_status=f.abort_http_status,
            grpc_status=GRPC_STATUS.get(f.abort_grpc_status or "") if f.abort_http_status is None else None,
            percentage=fractional(f.abort_percent) if f.abort_percent is not None else None,
        )
    return out if out.delay is not None or out.abort is not None else None


def cors_config(c: Cors) -> cors.CorsPolicy:
    """istiod TranslateCORSPolicy."""
    return cors.CorsPolicy(
        allow_origin_string_match=[string_matcher(sm) for sm in c.allow_origins],
        allow_methods=",".join(c.allow_methods),
        allow_headers=",".join(c.allow_headers),
        expose_headers=",".join(c.expose_headers),
        max_age=str(int(c.max_age.total_seconds())) if c.max_age is not None else "",
        allow_credentials=c.allow_credentials,
        filter_enabled=core.RuntimeFractionalPercent(default_value=fractional(Percent(100))),
        forward_not_matching_preflights=c.forward_unmatched_preflights,
    )


def per_filter_config(f: Fault | None, c: Cors | None) -> dict[str, AnyMsg]:
    out: dict[str, AnyMsg] = {}
    if f is not None:
        config = fault_config(f)
        if config is not None:
            out[FAULT_FILTER] = AnyMsg.pack(config)
    if c is not None:
        out[CORS_FILTER] = AnyMsg.pack(cors_config(c))
    return out


def _options(pairs: tuple[tuple[str, str], ...], append: bool) -> list[core.HeaderValueOption]:
    action = (
        core.HeaderValueOptionHeaderAppendAction.APPEND_IF_EXISTS_OR_ADD
        if append
        else core.HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
    )
    return [
        core.HeaderValueOption(header=core.HeaderValue(key=k, value=v), append_action=action)
        for k, v in pairs
        if k.lower() not in _HOST_HEADERS
    ]


def header_options(ops: HeaderOps | None) -> tuple[list[core.HeaderValueOption], list[str]]:
    """(headers_to_add, headers_to_remove): set -> OVERWRITE, add -> APPEND, sorted by key; pseudo-headers and
    host are never removed (Envoy rejects that)."""
    if not ops:
        return [], []
    adds = _options(ops.set, append=False) + _options(ops.add, append=True)
    removes = [h for h in ops.remove if not h.startswith(":") and h.lower() != "host"]
    return adds, removes


def host_rewrite(ops: HeaderOps | None) -> str | None:
    """headers.request.set/add[":authority"|"host"] -> host_rewrite_literal; set wins over add."""
    if not ops:
        return None
    for pairs in (ops.set, ops.add):
        for k, v in pairs:
            if k.lower() in _HOST_HEADERS:
                return v
    return None


def redirect_action(r: Redirect, listener_port: int) -> rte.RedirectAction:
    port = r.port
    if r.port_from_request:
        port = listener_port
    scheme = r.scheme
    if port is not None and ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        port = None  # istiod suppresses the default port of the scheme
    return rte.RedirectAction(
        path_redirect=r.uri or None,  # oneof members: unset, not ""
        prefix_rewrite=r.prefix or None,
        host_redirect=r.authority,
        scheme_redirect=scheme or None,
        port_redirect=port or 0,
        response_code=_REDIRECT_CODES.get(r.code, rte.RedirectActionRedirectResponseCode.MOVED_PERMANENTLY),
    )


def direct_response(d: DirectResponse) -> rte.DirectResponseAction:
    body = None
    if d.body is not None:
        body = core.DataSource(inline_string=d.body)
    elif d.body_bytes is not None:
        body = core.DataSource(inline_bytes=d.body_bytes)
    return rte.DirectResponseAction(status=d.status, body=body)


def hash_policies(ch: ConsistentHash | None) -> list[rte.RouteActionHashPolicy]:
    """istiod consistentHashToHashPolicy."""
    if ch is None:
        return []
    if ch.header:
        return [rte.RouteActionHashPolicy(header=rte.RouteActionHashPolicyHeader(header_name=ch.header))]
    if ch.cookie:
        cookie = rte.RouteActionHashPolicyCookie(
            name=ch.cookie,
            ttl=ch.cookie_ttl,
            path=ch.cookie_path,
            attributes=[
                rte.RouteActionHashPolicyCookieAttribute(name=n, value=v) for n, v in ch.cookie_attributes
            ],
        )
        return [rte.RouteActionHashPolicy(cookie=cookie)]
    if ch.source_ip:
        props = rte.RouteActionHashPolicyConnectionProperties(source_ip=True)
        return [rte.RouteActionHashPolicy(connection_properties=props)]
    if ch.query_parameter:
        query = rte.RouteActionHashPolicyQueryParameter(name=ch.query_parameter)
        return [rte.RouteActionHashPolicy(query_parameter=query)]
    return []


def mirror_policy(cluster: str, p: Percent) -> rte.RouteActionRequestMirrorPolicy:
    return rte.RouteActionRequestMirrorPolicy(
        cluster=cluster,
        runtime_fraction=core.RuntimeFractionalPercent(default_value=fractional(p)),
        trace_sampled=False,
    )
