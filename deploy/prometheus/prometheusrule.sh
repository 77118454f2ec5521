#!/bin/sh
# Prints deploy/prometheus/rules.yaml as a prometheus-operator PrometheusRule (the rule
# file's groups, comments included, under `spec:`). `make prometheusrule` writes it to
# deploy/k8s/components/monitoring/prometheusrule.yaml; a test checks that file is current.
set -eu
rules="$(dirname "$0")/rules.yaml"
cat <<'HEADER'
# GENERATED from deploy/prometheus/rules.yaml by `make prometheusrule`: edit that file.
# Prometheus selects PrometheusRules by label: add the one yours selects (as for the
# PodMonitor).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: ingestor
  labels:
    app.kubernetes.io/name: ingestor
spec:
HEADER
sed -e 's/^\(.\)/  \1/' "$rules"
