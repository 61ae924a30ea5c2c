// ECharts on every [data-chart], built from the bar/line/pie charts and the
// tooltip/legend/grid/dataset components only (tree-shaken through echarts/core).
// A click on a data item with an `href` opens that page. Contract: assets/README.md.
import './shared/legacy-runtime.js';
import * as echarts from 'echarts/core';
import { BarChart, LineChart, PieChart } from 'echarts/charts';
import { DatasetComponent, GridComponent, LegendComponent, TooltipComponent } from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';

import './shared/widget.css';
import './charts.css';

import { mountAll, readJsonScript } from './shared/page-data.js';

echarts.use([BarChart, LineChart, PieChart, DatasetComponent, GridComponent, LegendComponent, TooltipComponent, CanvasRenderer]);

const FONT = '"PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif';

mountAll('[data-chart]', mountChart);

function mountChart(container) {
  const option = readJsonScript(container.getAttribute('data-chart'));
  const chart = echarts.init(container, null, { renderer: 'canvas' });
  chart.setOption({ textStyle: { fontFamily: FONT }, ...option });
  chart.on('click', (params) => {
    const href = params.data && params.data.href;
    if (href) {
      openSameOrigin(href);
    }
  });
  new ResizeObserver(() => chart.resize()).observe(container);
  container.chengxinChart = chart;
}

// Hrefs come from the server's option JSON; still, never follow javascript: or off-site links.
function openSameOrigin(href) {
  const target = new URL(href, window.location.href);
  if (target.origin === window.location.origin) {
    window.location.assign(target.href);
  } else {
    console.warn(`chart link ${href} leaves this site; ignored`);
  }
}
