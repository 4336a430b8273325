"""Test helpers that are package code (benches and other test suites import them): real Envoy, fake proxy."""
