"""Istio StringMatch / HTTPMatch -> Envoy matchers (istiod TranslateRouteMatch): the route and the CORS
filter config (translate/traffic.py) both match with these, so neither imports the other."""

from __future__ import annotations

from envoy_data_plane.envoy.config.route import v3 as rte
from envoy_data_plane.envoy.type.matcher import v3 as matcher

from xds.model.resources import HTTPMatch, StringMatch


def string_matcher(sm: StringMatch) -> matcher.StringMatcher:
    if sm.kind == "exact":
        return matcher.StringMatcher(exact=sm.value)
    if sm.kind == "prefix":
        return matcher.StringMatcher(prefix=sm.value)
    return matcher.StringMatcher(safe_regex=matcher.RegexMatcher(regex=sm.value))


def header_matcher(name: str, sm: StringMatch, invert: bool = False) -> rte.HeaderMatcher:
    if sm.kind == "present":
        return rte.HeaderMatcher(name=name, present_match=True, invert_match=invert)
    return rte.HeaderMatcher(
        name=name,
        string_match=string_matcher(sm),
        invert_match=invert,
        treat_missing_header_as_empty=invert,
    )


def route_match(m: HTTPMatch | None) -> rte.RouteMatch:
    """istiod TranslateRouteMatch."""
    if m is None:
        return rte.RouteMatch(prefix="/")
    headers = [header_matcher(name, sm) for name, sm in m.headers]
    headers += [header_matcher(name, sm, invert=True) for name, sm in m.without_headers]
    headers.sort(key=lambda h: h.name)
    if m.method is not None:
        headers.append(header_matcher(":method", m.method))
    if m.authority is not None:
        headers.append(header_matcher(":authority", m.authority))
    query = [
        rte.QueryParameterMatcher(name=name, present_match=True)
        if sm.kind == "present"
        else rte.QueryParameterMatcher(name=name, string_match=string_matcher(sm))
        for name, sm in m.query_params
    ]
    path: dict[str, object] = {"prefix": "/"}
    if m.uri is not None and m.uri.kind == "exact":
        path = {"path": m.uri.value}
    elif m.uri is not None and m.uri.kind == "prefix":
        path = {"prefix": m.uri.value}
    elif m.uri is not None and m.uri.kind == "regex":
        path = {"safe_regex": matcher.RegexMatcher(regex=m.uri.value)}
    return rte.RouteMatch(
        **path,  # type: ignore[arg-type]
        case_sensitive=not m.ignore_uri_case,
        headers=headers,
        query_parameters=query,
    )
