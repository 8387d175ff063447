# The service image: the same package the README's commands install, nothing else.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY policies ./policies
COPY monitor ./monitor
COPY workers ./workers
COPY examples ./examples
RUN pip install --no-cache-dir . && useradd --system --uid 10001 monitor
USER monitor
ENTRYPOINT ["python", "-m", "monitor"]
CMD ["replay", "examples/timeline.jsonl"]
