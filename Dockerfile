# The exporter's image: the fully static binary `make dist` builds
# (dist/bpf-exporter: libbpf, libelf, zlib and glibc linked in) and
# nothing else. Build it first, then the image:
#   make dist && docker build -t bpf-exporter:0.1.0 .
# The binary needs no shell, no libraries, no CA certificates and no
# users; it runs as root in the container, with the capabilities the pod
# grants (packaging/kubernetes/daemonset.yaml).
FROM scratch
COPY dist/bpf-exporter /bpf-exporter
EXPOSE 9435
ENTRYPOINT ["/bpf-exporter"]
