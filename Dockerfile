# The mock-service image: only the static binary that `cargo xtask images` built on the
# host (compile on the host, package here), so an image build takes seconds and the
# image holds nothing but the program. The build context is target/image/.
FROM scratch
COPY mock-service /mock-service
# No shell, no package manager, no root: a numeric non-root user (there is no
# /etc/passwd in a scratch image).
USER 65532:65532
ENV HOST=0.0.0.0 \
    PORT=8080
EXPOSE 8080
ENTRYPOINT ["/mock-service"]
