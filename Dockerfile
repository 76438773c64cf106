# radixgate: the OpenAI-compatible server, `radixgate serve`, as README.md documents it.
#
#   docker build -t radixgate .
#   docker run --gpus all -p 8000:8000 -v ~/models:/models radixgate --model /models/NAME
#
# CPU image (no GPU needed; the CPU torch wheel):
#   docker build --build-arg BASE=ubuntu:24.04 --build-arg TORCH=cpu --build-arg EXTRAS= -t radixgate:cpu .
#   docker run -p 8000:8000 radixgate:cpu                 # the embedded random-weight demo model
#
# Arguments after the image name go to `radixgate serve`; settings can also come as RADIXGATE_<FLAG>
# environment variables. Keep the port at 8000 inside (or set RADIXGATE_PORT) so the health check finds it.
# On `docker stop` (SIGTERM) the server drains requests in flight, then exits 0.
ARG BASE=nvidia/cuda:12.8.1-base-ubuntu24.04
FROM ${BASE}

ARG TORCH=cu128
ARG EXTRAS=gpu

COPY pyproject.toml README.md /src/
COPY gateway /src/gateway
COPY kernels /src/kernels
COPY sdk /src/sdk
COPY loadtest /src/loadtest
COPY scripts/docker-install /src/scripts/docker-install
RUN TORCH="$TORCH" EXTRAS="$EXTRAS" SRC=/src VENV=/opt/radixgate APP_USER=radixgate /src/scripts/docker-install \
    && rm -rf /src

ENV PATH=/opt/radixgate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RADIXGATE_HOST=0.0.0.0 \
    RADIXGATE_PORT=8000 \
    RADIXGATE_CACHE=/home/radixgate/.cache/radixgate

USER radixgate
WORKDIR /home/radixgate
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('RADIXGATE_PORT', '8000') + '/health', timeout=4)"]
ENTRYPOINT ["radixgate", "serve"]
CMD []
