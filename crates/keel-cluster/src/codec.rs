//! How `keel_score` travels in Ballista's plans: the client, the scheduler and every executor
//! use these codecs, which are Ballista's own (its shuffle nodes, file formats) plus the
//! function, written as its spec. An executor's codec carries the models it scores with.

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use keel_lake::arrow::datatypes::SchemaRef;
use keel_lake::datafusion::catalog::TableProvider;
use keel_lake::datafusion::common::{DataFusionError, Result, TableReference};
use keel_lake::datafusion::datasource::file_format::FileFormatFactory;
use keel_lake::datafusion::execution::TaskContext;
use keel_lake::datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use keel_lake::datafusion::physical_plan::ExecutionPlan;

use crate::udf::{KEEL_SCORE, KeelScore, Models};

fn encode(node: &ScalarUDF, buf: &mut Vec<u8>) {
    if let Some(score) = node.inner().downcast_ref::<KeelScore>() {
        buf.extend_from_slice(score.encoded());
    }
}

fn decode(name: &str, buf: &[u8], models: &Option<Arc<Models>>) -> Result<Option<Arc<ScalarUDF>>> {
    if name != KEEL_SCORE {
        return Ok(None);
    }
    let score = KeelScore::decode(buf, models.clone()).map_err(|e| DataFusionError::Plan(e.to_string()))?;
    Ok(Some(Arc::new(score.udf())))
}

/// Ballista's logical codec with `keel_score`.
#[derive(Debug)]
pub struct LogicalCodec {
    inner: BallistaLogicalExtensionCodec,
    models: Option<Arc<Models>>,
}

impl LogicalCodec {
    /// `models`: where the function runs (an executor); `None` where it is only planned.
    pub fn new(models: Option<Arc<Models>>) -> LogicalCodec {
        LogicalCodec {
            inner: BallistaLogicalExtensionCodec::default(),
            models,
        }
    }
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        self.inner.try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(&self, buf: &[u8], ctx: &TaskContext) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(&self, buf: &mut Vec<u8>, node: Arc<dyn FileFormatFactory>) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match decode(name, buf, &self.models)? {
            Some(udf) => Ok(udf),
            None => self.inner.try_decode_udf(name, buf),
        }
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode(node, buf);
        Ok(())
    }
}

/// Ballista's physical codec with `keel_score`.
#[derive(Debug)]
pub struct PhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
    models: Option<Arc<Models>>,
}

impl PhysicalCodec {
    /// `models`: where the function runs (an executor); `None` where it is only planned.
    pub fn new(models: Option<Arc<Models>>) -> PhysicalCodec {
        PhysicalCodec {
            inner: BallistaPhysicalExtensionCodec::default(),
            models,
        }
    }
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match decode(name, buf, &self.models)? {
            Some(udf) => Ok(udf),
            None => self.inner.try_decode_udf(name, buf),
        }
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode(node, buf);
        Ok(())
    }
}
