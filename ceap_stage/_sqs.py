"""The SQS record models of a queue batch (docs/contract.md section 8).

A module of its own, imported when first used: defining pydantic models costs milliseconds of
cold start that a stage which never reads a queue should not pay.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SqsMessageAttribute", "SqsRecord"]


class SqsMessageAttribute(BaseModel):
    """One SQS message attribute, as a queue batch carries it.

    Example:
        >>> SqsMessageAttribute.model_validate({"stringValue": "eu", "dataType": "String"})
        SqsMessageAttribute(string_value='eu', binary_value=None, data_type='String')
    """

    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)

    string_value: str | None = Field(None, alias="stringValue")
    binary_value: str | None = Field(None, alias="binaryValue")
    data_type: str = Field("String", alias="dataType")


class SqsRecord(BaseModel):
    """An SQS record of a queue batch: its body and metadata (docs/batches.md).

    Use it as the input model (``list[SqsRecord]``, or a subclass of it) of a first stage fed
    by a queue to receive the records themselves rather than their decoded bodies. Fields keep
    the SQS names as aliases, so a record dumps back to the shape the queue sent; the FIFO
    attributes are properties.

    Example:
        >>> record = SqsRecord.model_validate({
        ...     "messageId": "5f1c9a2e-0b7d-4c1e-9a55-3f0e6d1b2c44", "body": "hello",
        ...     "attributes": {"MessageGroupId": "customer-17", "SequenceNumber": "18"},
        ...     "eventSource": "aws:sqs"})
        >>> record.message_id[:8], record.body, record.message_group_id, record.sequence_number
        ('5f1c9a2e', 'hello', 'customer-17', '18')
    """

    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)

    message_id: str = Field(alias="messageId")
    receipt_handle: str = Field("", alias="receiptHandle")
    body: str
    attributes: dict[str, str] = Field(default_factory=dict)
    message_attributes: dict[str, SqsMessageAttribute] = Field(
        default_factory=dict, alias="messageAttributes"
    )
    md5_of_body: str | None = Field(None, alias="md5OfBody")
    event_source: str = Field("aws:sqs", alias="eventSource")
    event_source_arn: str | None = Field(None, alias="eventSourceARN")
    aws_region: str | None = Field(None, alias="awsRegion")

    @property
    def message_group_id(self) -> str | None:
        """The FIFO message group (``attributes.MessageGroupId``), None on a standard queue."""
        return self.attributes.get("MessageGroupId")

    @property
    def message_deduplication_id(self) -> str | None:
        """The FIFO deduplication id (``attributes.MessageDeduplicationId``)."""
        return self.attributes.get("MessageDeduplicationId")

    @property
    def sequence_number(self) -> str | None:
        """The FIFO sequence number (``attributes.SequenceNumber``)."""
        return self.attributes.get("SequenceNumber")

    @property
    def approximate_receive_count(self) -> int | None:
        """How many times the queue has delivered this message (``ApproximateReceiveCount``)."""
        value = self.attributes.get("ApproximateReceiveCount")
        return int(value) if value is not None and value.isdigit() else None
