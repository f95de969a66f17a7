"""Hyperliquid replica command contract v1: replica.proto and its generated Python."""
